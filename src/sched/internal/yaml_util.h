// Helpers shared by the sched parsers: yaml-cpp access that never throws past the boundary and
// error messages of the form "FILE:LINE: field.path: what is wrong; expected ...".
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "yaml-cpp/yaml.h"

namespace tandem::sched::internal {

// Collects the context every message needs.
class YamlReader {
 public:
  explicit YamlReader(absl::string_view filename) : filename_(filename) {}

  // Parses a whole document; a syntax error names its line and column.
  absl::StatusOr<YAML::Node> Load(absl::string_view text) const;

  // "FILE:LINE: FIELD: MESSAGE" (LINE from the node's mark when it has one).
  absl::Status Error(const YAML::Node& node, absl::string_view field,
                     absl::string_view message) const;
  int Line(const YAML::Node& node) const;

  // Typed accessors: absent keys yield nullopt; a present key of the wrong type is an error.
  absl::StatusOr<std::optional<std::string>> String(const YAML::Node& map, absl::string_view key,
                                                    absl::string_view field) const;
  absl::StatusOr<std::optional<int64_t>> Int(const YAML::Node& map, absl::string_view key,
                                             absl::string_view field) const;
  absl::StatusOr<std::optional<double>> Double(const YAML::Node& map, absl::string_view key,
                                               absl::string_view field) const;
  absl::StatusOr<std::optional<bool>> Bool(const YAML::Node& map, absl::string_view key,
                                           absl::string_view field) const;
  // Fails naming the first key of `map` that is not in `allowed`.
  absl::Status CheckKeys(const YAML::Node& map, absl::string_view field,
                         const std::vector<absl::string_view>& allowed) const;

  const std::string& filename() const { return filename_; }

 private:
  std::string filename_;
};

// Runs a parser body, turning any exception yaml-cpp throws past the checks (some malformed trees,
// e.g. a scalar where a map is expected, throw on access) into an InvalidArgument naming the
// file, so bad input never ends the process.
template <typename Body>
auto GuardParse(absl::string_view filename, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(filename, ": cannot read: ", e.what()));
  }
}

// "a.b" or "a" when prefix is empty.
std::string Field(absl::string_view prefix, absl::string_view name);

}  // namespace tandem::sched::internal
