// Metrics snapshots: the JSON form of planner Observations, so that a decision can be evaluated
// from a file (`tandem planner --once --snapshot FILE`) and replayed in tests. Format in
// docs/planner.md ("Metrics snapshot").
//
//   TANDEM_ASSIGN_OR_RETURN(std::vector<Observation> history,
//                           ParseObservations(text, "snapshot.json"));
//
// Thread-safety: stateless functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "planner/planner.h"

namespace tandem::planner {

// One observation (a JSON object) or a history (an array of them, oldest first). Unknown keys are
// refused; each observation is validated (ValidateObservation), and times must not go backwards.
absl::StatusOr<std::vector<Observation>> ParseObservations(std::string_view json,
                                                           std::string_view source);

std::string ObservationToJson(const Observation& observation);

}  // namespace tandem::planner
