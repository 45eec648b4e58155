#include "planner/scale_targets.h"

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tandem::planner {

absl::StatusOr<ScaleTarget> ParseScaleTarget(std::string_view text) {
  auto refuse = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("--scale '", std::string(text), "': ", std::string(why),
                     "; expected NAME=RESOURCE[*PODS][,...]:MIN:MAX, e.g. ", "decode=decode:1:8"));
  };
  const size_t equals = text.find('=');
  if (equals == std::string_view::npos || equals == 0) return refuse("no NAME= at the start");
  ScaleTarget target;
  target.name = std::string(text.substr(0, equals));
  std::string_view rest = text.substr(equals + 1);
  const size_t max_colon = rest.rfind(':');
  if (max_colon == std::string_view::npos) return refuse("no :MIN:MAX at the end");
  const size_t min_colon = rest.rfind(':', max_colon == 0 ? 0 : max_colon - 1);
  if (min_colon == std::string_view::npos || min_colon >= max_colon) {
    return refuse("no :MIN:MAX at the end");
  }
  if (!absl::SimpleAtoi(std::string(rest.substr(min_colon + 1, max_colon - min_colon - 1)),
                        &target.min_units) ||
      !absl::SimpleAtoi(std::string(rest.substr(max_colon + 1)), &target.max_units)) {
    return refuse("MIN and MAX must be integers");
  }
  if (target.min_units < 0 || target.max_units < 1 || target.min_units > target.max_units) {
    return refuse(absl::StrCat("needs 0 <= MIN <= MAX and MAX >= 1, got MIN ", target.min_units,
                               " and MAX ", target.max_units));
  }
  std::string_view resources = rest.substr(0, min_colon);
  if (resources.empty()) return refuse("no RESOURCE");
  while (true) {
    const size_t comma = resources.find(',');
    std::string_view part = resources.substr(0, comma);
    if (part.empty()) return refuse("an empty RESOURCE in the list");
    target.resources.emplace_back(part);
    if (comma == std::string_view::npos) break;
    resources.remove_prefix(comma + 1);
  }
  return target;
}

absl::StatusOr<UnitComposition> CompositionFromName(std::string_view name) {
  if (name == "prefill") return UnitComposition{.prefill = 1, .decode = 0};
  if (name == "decode") return UnitComposition{.prefill = 0, .decode = 1};
  return absl::NotFoundError(
      absl::StrCat("scale target '", std::string(name),
                   "' is neither 'prefill' nor 'decode'; say which role it holds with --role-of ",
                   std::string(name), "=prefill|decode"));
}

absl::Status ApplyTargetBounds(const std::vector<ScaleTarget>& targets, ReplicaBounds* bounds) {
  RoleBounds prefill = bounds->prefill, decode = bounds->decode;
  const ScaleTarget* prefill_owner = nullptr;
  const ScaleTarget* decode_owner = nullptr;
  for (const ScaleTarget& target : targets) {
    const UnitComposition& c = target.composition;
    if (c.prefill < 0 || c.decode < 0 || c.prefill + c.decode == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale target '", target.name, "' holds no prefill or decode instance"));
    }
    for (auto [count, owner, role, name] :
         {std::tuple{c.prefill, &prefill_owner, &prefill, "prefill"},
          std::tuple{c.decode, &decode_owner, &decode, "decode"}}) {
      if (count == 0) continue;
      if (*owner != nullptr) {
        return absl::InvalidArgumentError(absl::StrCat("scale targets '", (*owner)->name, "' and '",
                                                       target.name, "' both hold the ", name,
                                                       " role; the planner sizes each role once"));
      }
      *owner = &target;
      role->min_instances = std::max(1, target.min_units * count);
      role->max_instances = target.max_units * count;
    }
  }
  ReplicaBounds candidate = *bounds;
  candidate.prefill = prefill;
  candidate.decode = decode;
  absl::StatusOr<std::pair<int, int>> feasible = SmallestFeasibleReplicas(candidate);
  if (!feasible.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the --scale bounds (prefill ", prefill.min_instances, "..", prefill.max_instances,
        ", decode ", decode.min_instances, "..", decode.max_instances,
        ") cannot be met with the config's ratio and GPU budget: ", feasible.status().message()));
  }
  *bounds = candidate;
  return absl::OkStatus();
}

int UnitsFor(const ScaleTarget& target, const Decision& decision) {
  auto ceil_div = [](int a, int b) { return (a + b - 1) / b; };
  int units = 0;
  if (target.composition.prefill > 0) {
    units = std::max(units, ceil_div(decision.prefill.target, target.composition.prefill));
  }
  if (target.composition.decode > 0) {
    units = std::max(units, ceil_div(decision.decode.target, target.composition.decode));
  }
  return std::clamp(units, target.min_units, target.max_units);
}

}  // namespace tandem::planner
