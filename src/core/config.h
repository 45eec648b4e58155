// Layered configuration: one precedence rule everywhere in Tandem,
//
//     config file (YAML)  <  TANDEM_* environment variables  <  command-line flags.
//
// A command declares its options once with CLI11; after parsing, ApplyLayeredConfig fills every
// option the command line did not set, first from `TANDEM_<OPTION_NAME>` (upper case, dashes as
// underscores: `--max-batch-tokens` <- TANDEM_MAX_BATCH_TOKENS), then from the config file key of
// the same name (`max-batch-tokens:` or `max_batch_tokens:`). A config file may hold a section
// per subcommand (`worker: {listen: ...}`); keys in the section win over top-level keys. Keys
// that are neither an option nor a known section are refused with their line number, so typos
// do not pass silently. List options take a YAML sequence or a comma-separated variable.
//
//   CLI::App* worker = root.add_subcommand("worker");
//   worker->add_option("--listen", listen);
//   ... parse ...
//   TANDEM_RETURN_IF_ERROR(ApplyLayeredConfig(*worker, Env::Default(), config_path));
//
// Thread-safety: call from the main thread during start-up.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "core/env.h"

namespace tandem {

// `config_path` may be empty (no file). `sections` are top-level keys of the file that belong
// to other commands and are ignored here (by default, the names of `command`'s sibling
// subcommands).
absl::Status ApplyLayeredConfig(CLI::App& command, Env& env, const std::string& config_path);

// The variable name for a long option name: "max-batch-tokens" -> "TANDEM_MAX_BATCH_TOKENS".
std::string EnvVarForOption(std::string_view long_name);

}  // namespace tandem
