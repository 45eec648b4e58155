// Admission control: a bound on the requests the router carries at once, so overload is
// answered with 429 and a Retry-After estimate instead of queuing without bound.
//
//   AdmissionController admission({.max_in_flight = 256});
//   absl::StatusOr<AdmissionController::Ticket> ticket = admission.Admit(now_micros);
//   if (!ticket.ok()) reply 429 with Retry-After: admission.RetryAfterSeconds(now_micros)
//   ...
//   admission.Release(*ticket, now_micros);   // when the request ends, however it ends
//
// The Retry-After estimate is how long the current load needs to drain at the recent
// completion rate, clamped to [1, max_retry_after_seconds].
//
// Thread-safety: thread-safe.
#pragma once

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace tandem::router {

struct AdmissionConfig {
  int64_t max_in_flight = 256;
  int64_t max_retry_after_seconds = 60;
};

class AdmissionController {
 public:
  struct Ticket {
    int64_t admitted_micros = 0;
  };

  explicit AdmissionController(AdmissionConfig config) : config_(config) {}

  // kResourceExhausted when `max_in_flight` requests are already in flight.
  absl::StatusOr<Ticket> Admit(int64_t now_micros);
  void Release(const Ticket& ticket, int64_t now_micros);

  int64_t in_flight() const;
  int64_t rejected() const;
  int64_t RetryAfterSeconds(int64_t now_micros) const;

 private:
  const AdmissionConfig config_;
  mutable absl::Mutex mu_;
  int64_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t rejected_ ABSL_GUARDED_BY(mu_) = 0;
  // Completions per second, an exponentially weighted average over ~10 s.
  double completion_rate_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_completion_micros_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace tandem::router
