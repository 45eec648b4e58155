#include "core/config.h"

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "yaml-cpp/yaml.h"

namespace tandem {
namespace {

std::string Canonical(absl::string_view key) { return absl::StrReplaceAll(key, {{"_", "-"}}); }

std::string Where(const std::string& path, const YAML::Node& node) {
  return absl::StrCat(path, ":", node.Mark().line + 1);
}

// Converts a YAML value into the strings CLI11 expects as results for `option`.
absl::Status YamlToResults(const std::string& path, const std::string& key, const YAML::Node& node,
                           const CLI::Option& option, std::vector<std::string>* results) {
  bool many = option.get_items_expected_max() > 1;
  if (node.IsScalar()) {
    results->push_back(node.Scalar());
    return absl::OkStatus();
  }
  if (node.IsSequence() && many) {
    for (const YAML::Node& item : node) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(path, item), ": '", key, "' must be a list of plain values"));
      }
      results->push_back(item.Scalar());
    }
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(Where(path, node), ": '", key, "' must be ",
                                                 many ? "a value or a list of values" : "a value"));
}

}  // namespace

std::string EnvVarForOption(std::string_view long_name) {
  return absl::StrCat("TANDEM_",
                      absl::AsciiStrToUpper(absl::StrReplaceAll(
                          absl::string_view(long_name.data(), long_name.size()), {{"-", "_"}})));
}

absl::Status ApplyLayeredConfig(CLI::App& command, Env& env, const std::string& config_path) {
  // Collect the file's values for this command: top level first, then its section over it.
  std::map<std::string, YAML::Node> file_values;
  if (!config_path.empty()) {
    absl::StatusOr<std::string> text = env.ReadFile(config_path);
    if (!text.ok())
      return absl::Status(text.status().code(),
                          absl::StrCat("config file: ", text.status().message()));
    YAML::Node root;
    try {
      root = YAML::Load(*text);
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
    }
    if (root.IsNull()) root = YAML::Node(YAML::NodeType::Map);
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": the config file must be a mapping of option names"));
    }
    std::set<std::string> sections;
    if (const CLI::App* parent = command.get_parent(); parent != nullptr) {
      for (const CLI::App* sibling : parent->get_subcommands({})) {
        sections.insert(sibling->get_name());
      }
    }
    auto known = [&](const std::string& key) {
      for (const CLI::Option* option : command.get_options()) {
        for (const std::string& name : option->get_lnames()) {
          if (name == key) return true;
        }
      }
      return false;
    };
    std::vector<std::string> allowed;
    for (const CLI::Option* option : command.get_options()) {
      if (!option->get_lnames().empty() && option->get_lnames()[0] != "help" &&
          option->get_lnames()[0] != "config") {
        allowed.push_back(option->get_lnames()[0]);
      }
    }
    auto take = [&](const YAML::Node& map, bool top_level) -> absl::Status {
      for (const auto& item : map) {
        std::string key = Canonical(item.first.as<std::string>());
        if (top_level && key == command.get_name() && item.second.IsMap()) continue;
        if (top_level && sections.count(key) > 0) continue;  // another command's section
        if (!known(key) || key == "config" || key == "help") {
          return absl::InvalidArgumentError(
              absl::StrCat(Where(config_path, item.first), ": unknown option '", key, "' for '",
                           command.get_name(), "' (allowed: ", absl::StrJoin(allowed, ", "), ")"));
        }
        file_values[key] = item.second;
      }
      return absl::OkStatus();
    };
    absl::Status status = take(root, true);
    if (!status.ok()) return status;
    if (YAML::Node section = root[command.get_name()]; section && section.IsMap()) {
      status = take(section, false);
      if (!status.ok()) return status;
    }
  }

  for (CLI::Option* option : command.get_options()) {
    if (option->count() > 0 || option->get_lnames().empty()) continue;
    const std::string& name = option->get_lnames()[0];
    if (name == "help" || name == "config") continue;
    std::vector<std::string> results;
    std::string source;
    if (std::optional<std::string> value = env.GetVar(EnvVarForOption(name)); value.has_value()) {
      source = EnvVarForOption(name);
      if (option->get_items_expected_max() > 1) {
        for (absl::string_view part : absl::StrSplit(*value, ',', absl::SkipEmpty())) {
          results.emplace_back(part);
        }
      } else {
        results.push_back(*value);
      }
    } else if (auto it = file_values.find(name); it != file_values.end()) {
      source = absl::StrCat(config_path, " key '", name, "'");
      absl::Status status = YamlToResults(config_path, name, it->second, *option, &results);
      if (!status.ok()) return status;
    } else {
      continue;
    }
    try {
      for (const std::string& result : results) option->add_result(result);
      option->run_callback();
    } catch (const CLI::Error& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": bad value for --", name, ": ", e.what()));
    }
  }
  return absl::OkStatus();
}

}  // namespace tandem
