// Reports of a placement: a human-readable table and JSON, as `tandem place` prints them.
//
//   std::string text = FormatPlacementTable(cluster, request, result);
//   nlohmann::json json = PlacementToJson(cluster, request, result);
//
// Thread-safety: pure functions.
#pragma once

#include <string>

#include "nlohmann/json.hpp"
#include "sched/cluster.h"
#include "sched/gang.h"
#include "sched/scheduler.h"

namespace tandem::sched {

std::string FormatPlacementTable(const Cluster& cluster, const PlacementRequest& request,
                                 const PlacementResult& result);

nlohmann::json PlacementToJson(const Cluster& cluster, const PlacementRequest& request,
                               const PlacementResult& result);

}  // namespace tandem::sched
