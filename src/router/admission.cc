#include "router/admission.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tandem::router {

absl::StatusOr<AdmissionController::Ticket> AdmissionController::Admit(int64_t now_micros) {
  absl::MutexLock lock(&mu_);
  if (in_flight_ >= config_.max_in_flight) {
    ++rejected_;
    return absl::ResourceExhaustedError(absl::StrCat("the server is at capacity (", in_flight_,
                                                     " requests in flight); retry later"));
  }
  ++in_flight_;
  return Ticket{now_micros};
}

void AdmissionController::Release(const Ticket& ticket, int64_t now_micros) {
  absl::MutexLock lock(&mu_);
  if (in_flight_ > 0) --in_flight_;
  if (last_completion_micros_ > 0 && now_micros > last_completion_micros_) {
    double gap = (now_micros - last_completion_micros_) / 1e6;
    double alpha = 1 - std::exp(-gap / 10.0);
    completion_rate_ = (1 - alpha) * completion_rate_ + alpha * (1.0 / gap);
  } else if (last_completion_micros_ == 0) {
    completion_rate_ = 0;
  }
  last_completion_micros_ = now_micros;
  (void)ticket;
}

int64_t AdmissionController::in_flight() const {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

int64_t AdmissionController::rejected() const {
  absl::MutexLock lock(&mu_);
  return rejected_;
}

int64_t AdmissionController::RetryAfterSeconds(int64_t now_micros) const {
  absl::MutexLock lock(&mu_);
  if (completion_rate_ <= 0) return 1;
  double drain = static_cast<double>(in_flight_) / completion_rate_;
  return std::clamp<int64_t>(static_cast<int64_t>(std::ceil(drain)), 1,
                             config_.max_retry_after_seconds);
}

}  // namespace tandem::router
