// `tandem render --target grove|lws|k8s SPEC` writes Kubernetes manifests for a deployment spec;
// `tandem validate SPEC` checks a spec and prints its roles in startup order.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "core/env.h"
#include "deploy/render.h"
#include "deploy/spec.h"

namespace tandem::cli {
namespace {

struct RenderOptions {
  std::string target = "k8s";
  std::string spec_path;
  std::string output;
};

void RegisterRender(CLI::App& root) {
  auto options = std::make_shared<RenderOptions>();
  CLI::App* render = root.add_subcommand(
      "render", "Render Kubernetes manifests for a deployment spec (docs/deploy-k8s.md)");
  render
      ->add_option("--target", options->target,
                   "grove (PodCliqueSet + KAI), lws (LeaderWorkerSet) or k8s (plain)")
      ->check(CLI::IsMember({"grove", "lws", "k8s"}));
  render->add_option("-o,--output", options->output, "Write to this file instead of stdout");
  render->add_option("spec", options->spec_path, "Deployment spec (YAML)")->required();
  SetAction(render, [render, options]() -> int {
    Env& env = Env::Default();
    absl::StatusOr<deploy::RenderTarget> target = deploy::ParseRenderTarget(options->target);
    if (!target.ok()) return ReportError(render, target.status());
    absl::StatusOr<deploy::DeploymentSpec> spec = deploy::LoadSpec(env, options->spec_path);
    if (!spec.ok()) return ReportError(render, spec.status());
    absl::StatusOr<std::string> manifests = deploy::RenderManifests(*spec, *target);
    if (!manifests.ok()) return ReportError(render, manifests.status());
    if (options->output.empty() || options->output == "-") {
      std::fwrite(manifests->data(), 1, manifests->size(), stdout);
      return 0;
    }
    absl::Status written = env.WriteFile(options->output, *manifests);
    if (!written.ok()) return ReportError(render, written);
    std::fprintf(stderr, "wrote %s\n", options->output.c_str());
    return 0;
  });

  auto spec_path = std::make_shared<std::string>();
  CLI::App* validate = root.add_subcommand(
      "validate", "Check a deployment spec and print its roles in startup order");
  validate->add_option("spec", *spec_path, "Deployment spec (YAML)")->required();
  SetAction(validate, [validate, spec_path]() -> int {
    absl::StatusOr<deploy::DeploymentSpec> spec = deploy::LoadSpec(Env::Default(), *spec_path);
    if (!spec.ok()) return ReportError(validate, spec.status());
    std::printf("%s: deployment '%s' is valid\n", spec_path->c_str(), spec->name.c_str());
    for (const deploy::Role& role : spec->roles) {
      std::string shape = absl::StrCat(role.replicas, " x ", deploy::RoleKindName(role.kind));
      if (role.gpus_per_instance > 0) absl::StrAppend(&shape, ", TP ", role.gpus_per_instance);
      if (role.MultiHost()) absl::StrAppend(&shape, " over ", role.nodes_per_instance, " hosts");
      if (!role.scaling_group.empty()) absl::StrAppend(&shape, ", group ", role.scaling_group);
      if (!role.starts_after.empty()) {
        absl::StrAppend(&shape, ", after ", absl::StrJoin(role.starts_after, ","));
      }
      std::printf("  %-12s %s\n", role.name.c_str(), shape.c_str());
    }
    return 0;
  });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterRender);
}  // namespace tandem::cli
