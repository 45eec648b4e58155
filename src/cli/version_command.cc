// `tandem version`: version, git hash, and the CPU instruction-set paths enabled at run time.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "build_info.h"
#include "cli/command.h"
#if __has_include("engine/cpu_features.h")
#include "engine/cpu_features.h"
#define TANDEM_HAVE_CPU_FEATURES 1
#endif

namespace tandem::cli {
namespace {

std::vector<std::string> IsaPaths() {
#ifdef TANDEM_HAVE_CPU_FEATURES
  return engine::EnabledIsaPaths();
#else
  std::vector<std::string> paths;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) paths.push_back("avx512");
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) paths.push_back("avx2");
  paths.push_back("scalar");
  return paths;
#endif
}

void RegisterVersion(CLI::App& root) {
  CLI::App* version = root.add_subcommand("version", "Print version, git hash and ISA paths");
  SetAction(version, [] {
    std::printf("tandem %s (git %s)\nisa paths: %s\n", TANDEM_VERSION, TANDEM_GIT_HASH,
                absl::StrJoin(IsaPaths(), ", ").c_str());
    return 0;
  });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterVersion);
}  // namespace tandem::cli
