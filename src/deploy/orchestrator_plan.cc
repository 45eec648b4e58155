#include "deploy/orchestrator_plan.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem::deploy {
namespace {

// The fields of a role that RoleTemplateKey covers, by name, for DiffSpecs.
std::vector<std::string> ChangedRoleFields(const Role& a, const Role& b) {
  std::vector<std::string> changed;
  if (a.kind != b.kind) changed.push_back("kind");
  if (a.model != b.model) changed.push_back("model");
  if (a.args != b.args) changed.push_back("args");
  if (a.env != b.env) changed.push_back("env");
  if (a.gpus_per_instance != b.gpus_per_instance) changed.push_back("gpusPerInstance");
  if (a.nodes_per_instance != b.nodes_per_instance) changed.push_back("nodesPerInstance");
  if (a.port != b.port) changed.push_back("port");
  return changed;
}

const UnitSpec* FindUnit(const std::vector<UnitSpec>& units, const std::string& name) {
  for (const UnitSpec& unit : units) {
    if (unit.name == name) return &unit;
  }
  return nullptr;
}

}  // namespace

std::string RoleTemplateKey(const Role& role) {
  // \x1f and \x1e cannot appear in YAML plain scalars users write, so fields cannot run together.
  std::string key = absl::StrCat(RoleKindName(role.kind), "\x1e", role.model, "\x1e",
                                 absl::StrJoin(role.args, "\x1f"), "\x1e");
  for (const auto& [name, value] : role.env) absl::StrAppend(&key, name, "=", value, "\x1f");
  absl::StrAppend(&key, "\x1e", role.gpus_per_instance, "\x1e", role.nodes_per_instance, "\x1e",
                  role.port);
  return key;
}

std::vector<UnitSpec> BuildUnits(const DeploymentSpec& spec) {
  std::vector<UnitSpec> units;
  std::map<std::string, size_t> unit_of_role;
  for (const Role& role : spec.roles) {
    if (role.scaling_group.empty()) {
      UnitSpec unit;
      unit.name = role.name;
      unit.roles = {role.name};
      unit.replicas = role.replicas;
      unit.min_available = role.min_available;
      unit.ready_timeout_seconds = role.ready_timeout_seconds;
      unit_of_role[role.name] = units.size();
      units.push_back(std::move(unit));
      continue;
    }
    auto found = std::find_if(units.begin(), units.end(), [&](const UnitSpec& unit) {
      return unit.is_group && unit.name == role.scaling_group;
    });
    if (found == units.end()) {
      const ScalingGroup* group = spec.FindScalingGroup(role.scaling_group);
      UnitSpec unit;
      unit.name = role.scaling_group;
      unit.is_group = true;
      unit.replicas = group != nullptr ? group->replicas : 1;
      unit.min_available = group != nullptr ? group->min_available : 1;
      unit.ready_timeout_seconds = group != nullptr ? group->ready_timeout_seconds : 300;
      units.push_back(std::move(unit));
      found = units.end() - 1;
    }
    found->roles.push_back(role.name);
    unit_of_role[role.name] = static_cast<size_t>(found - units.begin());
  }
  for (UnitSpec& unit : units) {
    std::set<std::string> members(unit.roles.begin(), unit.roles.end());
    std::set<std::string> seen;
    for (const std::string& role_name : unit.roles) {
      const Role* role = spec.FindRole(role_name);
      if (unit.is_group) absl::StrAppend(&unit.template_key, role_name, "*", role->replicas, ":");
      absl::StrAppend(&unit.template_key, RoleTemplateKey(*role), "\x1d");
      for (const std::string& dependency : role->starts_after) {
        if (!members.count(dependency) && seen.insert(dependency).second) {
          unit.depends_on.push_back(dependency);
        }
      }
    }
  }
  // Order units so each comes after the units holding its dependencies (roles are already in
  // startup order, but a scaling group gathers roles from several places in that order).
  std::vector<UnitSpec> ordered;
  std::vector<bool> placed(units.size(), false);
  while (ordered.size() < units.size()) {
    bool progress = false;
    for (size_t i = 0; i < units.size(); ++i) {
      if (placed[i]) continue;
      bool ready = std::all_of(
          units[i].depends_on.begin(), units[i].depends_on.end(), [&](const std::string& role) {
            auto it = unit_of_role.find(role);
            return it == unit_of_role.end() || it->second == i || placed[it->second];
          });
      if (!ready) continue;
      placed[i] = true;
      ordered.push_back(units[i]);
      progress = true;
      break;  // restart from the front: keeps the spec's order among independent units
    }
    if (!progress) {  // a cycle through a scaling group: keep the remaining units in spec order
      for (size_t i = 0; i < units.size(); ++i) {
        if (!placed[i]) {
          placed[i] = true;
          ordered.push_back(units[i]);
        }
      }
    }
  }
  return ordered;
}

absl::Duration RestartBackoff(int attempt, absl::Duration base, absl::Duration cap) {
  if (attempt <= 1) return std::min(base, cap);
  absl::Duration delay = base;
  for (int i = 1; i < attempt && delay < cap; ++i) delay *= 2;
  return std::min(delay, cap);
}

UnitPlan PlanUnit(const UnitSpec& unit, const std::vector<MemberView>& members) {
  UnitPlan plan;
  std::vector<const MemberView*> current_ready, current_pending, old_ready;
  for (const MemberView& member : members) {
    if (member.phase == MemberPhase::kDraining) continue;
    const bool ready = member.phase == MemberPhase::kReady;
    if (member.template_key == unit.template_key) {
      (ready ? current_ready : current_pending).push_back(&member);
    } else if (ready) {
      old_ready.push_back(&member);
    } else {
      plan.stop.push_back(member.id);  // an old member that serves nothing: no reason to wait
    }
  }
  auto by_id = [](const MemberView* a, const MemberView* b) { return a->id < b->id; };
  std::sort(old_ready.begin(), old_ready.end(), by_id);
  const int replicas = std::max(unit.replicas, 0);
  const int current_total = static_cast<int>(current_ready.size() + current_pending.size());
  int ready_total = static_cast<int>(current_ready.size() + old_ready.size());

  if (old_ready.empty()) {
    if (current_total < replicas) {
      plan.start = replicas - current_total;
      return plan;
    }
    int surplus = current_total - replicas;
    // Not-ready members first (newest first: the oldest is closest to becoming ready).
    std::sort(current_pending.begin(), current_pending.end(), by_id);
    while (surplus > 0 && !current_pending.empty()) {
      plan.stop.push_back(current_pending.back()->id);
      current_pending.pop_back();
      --surplus;
    }
    std::sort(current_ready.begin(), current_ready.end(), by_id);
    while (surplus > 0 && !current_ready.empty() && ready_total - 1 >= unit.min_available) {
      plan.drain.push_back(current_ready.back()->id);
      current_ready.pop_back();
      --ready_total;
      --surplus;
    }
    return plan;
  }

  // Rolling replacement. Fill what is missing outright, then surge one new member at a time.
  const int old_total = static_cast<int>(old_ready.size());
  if (current_total + old_total < replicas) plan.start = replicas - (current_total + old_total);
  if (current_pending.empty() && plan.start == 0 && current_total < replicas) plan.start = 1;
  // Retire old members while the new ready ones keep the unit at `replicas` members and at least
  // `min_available` ready.
  int remaining_old = old_total;
  const int new_ready = static_cast<int>(current_ready.size());
  for (const MemberView* old : old_ready) {
    if (new_ready + remaining_old <= replicas) break;
    if (ready_total - 1 < unit.min_available) break;
    plan.drain.push_back(old->id);
    --remaining_old;
    --ready_total;
  }
  return plan;
}

std::vector<std::string> DiffSpecs(const DeploymentSpec& running, const DeploymentSpec& next) {
  std::vector<std::string> lines;
  const std::vector<UnitSpec> before = BuildUnits(running);
  const std::vector<UnitSpec> after = BuildUnits(next);
  for (const UnitSpec& unit : after) {
    const UnitSpec* old = FindUnit(before, unit.name);
    if (old == nullptr) {
      lines.push_back(absl::StrCat(unit.name, ": added (", unit.replicas, " replicas)"));
      continue;
    }
    if (old->is_group != unit.is_group || old->roles != unit.roles) {
      lines.push_back(absl::StrCat(unit.name, ": members changed (", absl::StrJoin(old->roles, ","),
                                   " -> ", absl::StrJoin(unit.roles, ","), "), replaced"));
      continue;
    }
    if (old->template_key != unit.template_key) {
      std::vector<std::string> fields;
      for (const std::string& role_name : unit.roles) {
        const Role* a = running.FindRole(role_name);
        const Role* b = next.FindRole(role_name);
        std::vector<std::string> changed = ChangedRoleFields(*a, *b);
        if (unit.is_group && a->replicas != b->replicas) changed.push_back("replicas");
        for (const std::string& field : changed) {
          fields.push_back(unit.is_group ? absl::StrCat(role_name, ".", field) : field);
        }
      }
      lines.push_back(absl::StrCat(unit.name, ": ", absl::StrJoin(fields, ", "),
                                   " changed; rolling replacement"));
    }
    if (old->replicas != unit.replicas) {
      lines.push_back(absl::StrCat(unit.name, ": replicas ", old->replicas, " -> ", unit.replicas));
    }
    if (old->min_available != unit.min_available) {
      lines.push_back(absl::StrCat(unit.name, ": minAvailable ", old->min_available, " -> ",
                                   unit.min_available));
    }
  }
  for (const UnitSpec& unit : before) {
    if (FindUnit(after, unit.name) == nullptr)
      lines.push_back(absl::StrCat(unit.name, ": removed"));
  }
  return lines;
}

}  // namespace tandem::deploy
