// A rate or mean computed from metrics is NaN or infinite when its counters have not moved (0/0)
// or a scrape returned garbage; observations carry 0 instead. Not for use outside src/planner.
#pragma once

#include <cmath>

namespace tandem::planner::internal {

inline double FiniteOrZero(double value) { return std::isfinite(value) ? value : 0; }

}  // namespace tandem::planner::internal
