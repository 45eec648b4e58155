#include "sched/internal/yaml_util.h"

#include <exception>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem::sched::internal {

std::string Field(absl::string_view prefix, absl::string_view name) {
  if (prefix.empty()) return std::string(name);
  return absl::StrCat(prefix, ".", name);
}

absl::StatusOr<YAML::Node> YamlReader::Load(absl::string_view text) const {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    if (!root.IsDefined() || root.IsNull()) {
      return absl::InvalidArgumentError(absl::StrCat(filename_, ": the file is empty"));
    }
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename_, ":", root.Mark().line + 1, ": expected a mapping at the top"));
    }
    return root;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        filename_, ":", e.mark.line + 1, ":", e.mark.column + 1, ": malformed YAML/JSON: ", e.msg));
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(filename_, ": cannot parse: ", e.what()));
  }
}

int YamlReader::Line(const YAML::Node& node) const {
  if (!node.IsDefined()) return 0;
  int line = node.Mark().line;
  return line >= 0 ? line + 1 : 0;
}

absl::Status YamlReader::Error(const YAML::Node& node, absl::string_view field,
                               absl::string_view message) const {
  int line = Line(node);
  std::string where = line > 0 ? absl::StrCat(filename_, ":", line) : filename_;
  if (field.empty()) return absl::InvalidArgumentError(absl::StrCat(where, ": ", message));
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, ": ", message));
}

absl::StatusOr<std::optional<std::string>> YamlReader::String(const YAML::Node& map,
                                                              absl::string_view key,
                                                              absl::string_view field) const {
  YAML::Node value = map[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) return std::optional<std::string>();
  if (!value.IsScalar()) {
    return Error(value, Field(field, key), "expected a string");
  }
  return std::optional<std::string>(value.Scalar());
}

absl::StatusOr<std::optional<int64_t>> YamlReader::Int(const YAML::Node& map, absl::string_view key,
                                                       absl::string_view field) const {
  YAML::Node value = map[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) return std::optional<int64_t>();
  int64_t parsed = 0;
  if (!value.IsScalar() || !absl::SimpleAtoi(value.Scalar(), &parsed)) {
    return Error(value, Field(field, key),
                 absl::StrCat("'", value.IsScalar() ? value.Scalar() : "(not a scalar)",
                              "' is not an integer"));
  }
  return std::optional<int64_t>(parsed);
}

absl::StatusOr<std::optional<double>> YamlReader::Double(const YAML::Node& map,
                                                         absl::string_view key,
                                                         absl::string_view field) const {
  YAML::Node value = map[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) return std::optional<double>();
  double parsed = 0;
  if (!value.IsScalar() || !absl::SimpleAtod(value.Scalar(), &parsed)) {
    return Error(value, Field(field, key), "expected a number");
  }
  return std::optional<double>(parsed);
}

absl::StatusOr<std::optional<bool>> YamlReader::Bool(const YAML::Node& map, absl::string_view key,
                                                     absl::string_view field) const {
  YAML::Node value = map[std::string(key)];
  if (!value.IsDefined() || value.IsNull()) return std::optional<bool>();
  if (value.IsScalar()) {
    if (value.Scalar() == "true") return std::optional<bool>(true);
    if (value.Scalar() == "false") return std::optional<bool>(false);
  }
  return Error(value, Field(field, key), "expected true or false");
}

absl::Status YamlReader::CheckKeys(const YAML::Node& map, absl::string_view field,
                                   const std::vector<absl::string_view>& allowed) const {
  if (!map.IsMap()) return Error(map, field, "expected a mapping");
  for (const auto& entry : map) {
    const std::string& key = entry.first.Scalar();
    bool known = false;
    for (absl::string_view name : allowed) known = known || name == key;
    if (!known) {
      return Error(entry.first, Field(field, key),
                   absl::StrCat("unknown field; expected one of: ", absl::StrJoin(allowed, ", ")));
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem::sched::internal
