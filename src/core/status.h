// Status helpers on top of absl::Status / absl::StatusOr.
//
// Every fallible boundary in Tandem returns absl::Status or absl::StatusOr<T>; the canonical
// codes mean what they say: kUnavailable = retry elsewhere, kResourceExhausted = pool full,
// kDeadlineExceeded = timeout, kInvalidArgument = the caller's fault, kDataLoss = corrupt input.
//
//   absl::StatusOr<Model> Load(const std::string& path) {
//     TANDEM_ASSIGN_OR_RETURN(auto bytes, env.ReadFile(path));
//     TANDEM_RETURN_IF_ERROR(CheckMagic(bytes));
//     ...
//   }
//
// Thread-safety: stateless.
#pragma once

#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tandem {

// Returns `status` with `context` prepended to its message ("context: message"); OK stays OK.
absl::Status Annotate(const absl::Status& status, std::string_view context);

// The lower-case name of a status code as used in logs and metrics ("invalid_argument").
std::string_view StatusCodeName(absl::StatusCode code);

}  // namespace tandem

#define TANDEM_STATUS_CONCAT_INNER_(a, b) a##b
#define TANDEM_STATUS_CONCAT_(a, b) TANDEM_STATUS_CONCAT_INNER_(a, b)

// Returns from the current function if `expr` (an absl::Status) is not OK.
#define TANDEM_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status tandem_status_ = (expr);          \
    if (!tandem_status_.ok()) return tandem_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, else moves the value
// into `lhs` (which may be a declaration such as `auto x`).
#define TANDEM_ASSIGN_OR_RETURN(lhs, rexpr) \
  TANDEM_ASSIGN_OR_RETURN_IMPL_(TANDEM_STATUS_CONCAT_(tandem_statusor_, __LINE__), lhs, rexpr)
#define TANDEM_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()
