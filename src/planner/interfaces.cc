#include "planner/interfaces.h"

#include "absl/strings/str_cat.h"

namespace tandem::planner {

absl::StatusOr<Observation> SnapshotMetricsSource::Collect(double now_seconds) {
  if (next_ >= history_.size()) {
    return absl::OutOfRangeError(
        absl::StrCat("the snapshot holds ", history_.size(), " observations, all replayed"));
  }
  return history_[next_++];
}

}  // namespace tandem::planner
