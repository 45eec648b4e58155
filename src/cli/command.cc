#include "cli/command.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/config.h"
#include "core/env.h"
#include "core/logging.h"

namespace tandem::cli {
namespace {

struct ActionEntry {
  Action action;
  std::string config_path;
};

std::map<const CLI::App*, ActionEntry>& Actions() {
  static auto* actions = new std::map<const CLI::App*, ActionEntry>();
  return *actions;
}

std::vector<Registrar>& Registrars() {
  static auto* registrars = new std::vector<Registrar>();
  return *registrars;
}

std::string CommandPath(const CLI::App* command) {
  std::vector<std::string> names;
  for (const CLI::App* app = command; app != nullptr; app = app->get_parent()) {
    names.insert(names.begin(), app->get_name());
  }
  return absl::StrJoin(names, " ");
}

// The deepest subcommand chosen on the command line.
CLI::App* ChosenCommand(CLI::App* root) {
  CLI::App* current = root;
  while (true) {
    std::vector<CLI::App*> chosen = current->get_subcommands();
    if (chosen.empty()) return current;
    current = chosen.front();
  }
}

}  // namespace

CommandRegistration::CommandRegistration(Registrar registrar) { Registrars().push_back(registrar); }

void SetAction(CLI::App* command, Action action) {
  ActionEntry& entry = Actions()[command];
  entry.action = std::move(action);
  command->add_option("--config", entry.config_path,
                      "YAML file with option values (flags > TANDEM_* variables > this file)");
}

int ReportError(const CLI::App* command, const absl::Status& status) {
  std::fprintf(stderr, "%s: %s\n", CommandPath(command).c_str(),
               std::string(status.message()).c_str());
  return status.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

absl::Status RequireOptions(const CLI::App* command,
                            std::initializer_list<std::string_view> names) {
  for (std::string_view view : names) {
    std::string name(view);
    const CLI::Option* option = command->get_option_no_throw(absl::StrCat("--", name));
    if (option == nullptr) {
      return absl::InternalError(absl::StrCat("RequireOptions: no option --", name));
    }
    if (option->count() == 0) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is required (as a flag, as ",
                                                     EnvVarForOption(name),
                                                     ", or in the --config file)"));
    }
  }
  return absl::OkStatus();
}

void RegisterAllCommands(CLI::App& root) {
  for (Registrar registrar : Registrars()) registrar(root);
}

int RunMain(int argc, char** argv) {
  CLI::App root("Tandem serves large language models with disaggregated prefill and decode.",
                "tandem");
  root.footer("Run 'tandem COMMAND --help' for a command's options.");
  root.fallthrough();
  std::string log_level = "info";
  std::string log_format = "text";
  std::string log_file;
  root.add_option("--log-level", log_level,
                  "trace, debug, info, warn, error, critical or off (TANDEM_LOG_LEVEL)");
  root.add_option("--log-format", log_format, "text or json (TANDEM_LOG_FORMAT)");
  root.add_option("--log-file", log_file, "Write logs to this file instead of stderr");
  RegisterAllCommands(root);

  try {
    root.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", ChosenCommand(&root)->help().c_str());
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    std::printf("%s", root.help("", CLI::AppFormatMode::All).c_str());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", CommandPath(ChosenCommand(&root)).c_str(),
                 e.what());
    return 2;
  }

  CLI::App* chosen = ChosenCommand(&root);
  auto it = Actions().find(chosen);
  if (it == Actions().end()) {
    // `tandem` alone, or a command group such as `tandem model` without its subcommand.
    std::printf("%s", chosen->help().c_str());
    return chosen == &root ? 0 : 2;
  }

  Env& env = Env::Default();
  absl::Status status = ApplyLayeredConfig(root, env, "");
  if (status.ok()) status = ApplyLayeredConfig(*chosen, env, it->second.config_path);
  LogFormat format = LogFormat::kText;
  if (status.ok()) status = ParseLogFormat(log_format, &format);
  if (status.ok()) {
    status = InitLogging({.level = log_level, .format = format, .file = log_file});
  }
  if (!status.ok()) return ReportError(chosen, status);
  return it->second.action();
}

}  // namespace tandem::cli
