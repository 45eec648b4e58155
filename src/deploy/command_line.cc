#include "deploy/command_line.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tandem::deploy {

std::string WorkerRoleFlag(RoleKind kind) {
  switch (kind) {
    case RoleKind::kPrefill:
      return "prefill";
    case RoleKind::kDecode:
      return "decode";
    default:
      return "both";
  }
}

namespace {

// Whole CPUs in a Kubernetes quantity ("2" -> 2, "1500m" -> 1, "500m" -> 1); 0 when unset or
// unreadable.
int CpuThreads(const std::string& cpu) {
  if (cpu.empty()) return 0;
  double cores = 0;
  if (cpu.back() == 'm') {
    if (!absl::SimpleAtod(cpu.substr(0, cpu.size() - 1), &cores)) return 0;
    cores /= 1000;
  } else if (!absl::SimpleAtod(cpu, &cores)) {
    return 0;
  }
  if (!(cores > 0)) return 0;
  return std::max(1, static_cast<int>(cores));
}

}  // namespace

std::vector<std::string> RoleCommandLine(const DeploymentSpec& spec, const Role& role,
                                         const InstanceContext& context) {
  std::vector<std::string> argv = {context.program};
  auto add = [&argv](std::string flag, std::string value) {
    if (value.empty()) return;
    argv.push_back(std::move(flag));
    argv.push_back(std::move(value));
  };
  switch (role.kind) {
    case RoleKind::kRouter:
      argv.push_back("router");
      add("--listen", context.listen);
      add("--model", role.model.empty() ? spec.model : role.model);
      add("--planner", context.planner_url);
      break;
    case RoleKind::kPlanner:
      argv.push_back("planner");
      add("--listen", context.listen);
      add("--router", context.router_url);
      add("--connector", context.connector);
      add("--orchestrator", context.orchestrator_url);
      add("--namespace", context.namespace_name);
      for (const std::string& target : context.scale_targets) add("--scale", target);
      break;
    case RoleKind::kPrefill:
    case RoleKind::kDecode:
    case RoleKind::kWorker:
      argv.push_back("worker");
      add("--role", WorkerRoleFlag(role.kind));
      add("--model", role.model);
      add("--listen", context.listen);
      add("--advertise", context.advertise);
      add("--kv-listen", context.kv_listen);
      add("--router", context.router_url);
      add("--tp", absl::StrCat(role.TensorParallelSize()));
      // The engine's compute threads follow the CPUs the role asks for (unless its args say).
      if (int threads = CpuThreads(role.resources.cpu);
          threads > 0 &&
          std::find(role.args.begin(), role.args.end(), "--threads") == role.args.end()) {
        add("--threads", absl::StrCat(threads));
      }
      if (role.MultiHost()) {
        add("--nodes", absl::StrCat(role.nodes_per_instance));
        add("--node-rank", context.node_rank);
        add("--leader", context.leader);
      }
      break;
  }
  argv.insert(argv.end(), role.args.begin(), role.args.end());
  return argv;
}

std::vector<std::string> LocalScaleTargets(const DeploymentSpec& spec) {
  std::vector<std::string> targets;
  for (const Role& role : spec.roles) {
    if (role.autoscaling && role.autoscaling->controller == ScalingController::kPlanner) {
      targets.push_back(absl::StrCat(role.name, "=", role.name, ":", role.autoscaling->min, ":",
                                     role.autoscaling->max));
    }
  }
  for (const ScalingGroup& group : spec.scaling_groups) {
    if (group.autoscaling && group.autoscaling->controller == ScalingController::kPlanner) {
      targets.push_back(absl::StrCat(group.name, "=", group.name, ":", group.autoscaling->min, ":",
                                     group.autoscaling->max));
    }
  }
  return targets;
}

}  // namespace tandem::deploy
