// The `tandem` subcommand framework.
//
// Each command group lives in its own `src/cli/<group>_command.cc` and registers itself:
//
//   namespace tandem::cli {
//   namespace {
//   void RegisterPlace(CLI::App& root) {
//     auto* place = root.add_subcommand("place", "Place a deployment on a cluster model");
//     auto options = std::make_shared<PlaceOptions>();
//     place->add_option("--cluster", options->cluster, "Cluster description (YAML or JSON)");
//     SetAction(place, [options]() -> int { ...; return 0; });
//   }
//   }  // namespace
//   TANDEM_REGISTER_COMMAND(RegisterPlace);
//   }  // namespace tandem::cli
//
// The action runs after the command line is parsed and the one configuration precedence rule is
// applied to that subcommand's options: config file (`--config FILE`, YAML) < TANDEM_* variables
// < flags (see core/config.h). An action returns the process exit code; it reports its own
// errors with ReportError so every failure is one line on stderr.
//
// Thread-safety: registration happens during static initialization and parsing on the main
// thread; nothing here is used concurrently.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace tandem::cli {

using Action = std::function<int()>;
using Registrar = void (*)(CLI::App& root);

// Makes `command` runnable: `action` runs when it is the subcommand chosen on the command line.
// Adds `--config FILE` to it.
void SetAction(CLI::App* command, Action action);

// Prints "tandem <command>: <message>" on stderr and returns exit code 1 (or 2 for
// invalid-argument errors, the same code as a command-line mistake).
int ReportError(const CLI::App* command, const absl::Status& status);

// Fails with a message naming every way to supply the option when any of `names` (long option
// names without dashes) was given neither as a flag, a TANDEM_* variable nor in the config file.
absl::Status RequireOptions(const CLI::App* command, std::initializer_list<std::string_view> names);

struct CommandRegistration {
  explicit CommandRegistration(Registrar registrar);
};

// Runs the registered command groups against `root`. Used by main() and by tests.
void RegisterAllCommands(CLI::App& root);

// Parses argv, applies configuration, runs the chosen action, returns the exit code.
int RunMain(int argc, char** argv);

}  // namespace tandem::cli

#define TANDEM_CLI_CONCAT_INNER_(a, b) a##b
#define TANDEM_CLI_CONCAT_(a, b) TANDEM_CLI_CONCAT_INNER_(a, b)
#define TANDEM_REGISTER_COMMAND(registrar)                                                 \
  static const ::tandem::cli::CommandRegistration TANDEM_CLI_CONCAT_(tandem_registration_, \
                                                                     __LINE__)(registrar)
