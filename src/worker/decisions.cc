#include "worker/decisions.h"

#include <algorithm>

namespace tandem::worker {

LayerPushTracker::LayerPushTracker(int num_layers, int64_t prompt_tokens)
    : prompt_tokens_(prompt_tokens), end_(num_layers, -1) {}

LayerPushTracker::Result LayerPushTracker::OnLayer(int layer, int64_t start, int64_t count) {
  if (layer < 0 || layer >= static_cast<int>(end_.size()) || count <= 0) return Result::kPending;
  int64_t& end = end_[layer];
  if (end >= 0 && start < end) return Result::kRestarted;
  if (end >= prompt_tokens_) return Result::kPending;  // generation past the prompt
  if (layer == 0) computed_ += std::min(start + count, prompt_tokens_) - start;
  end = start + count;
  if (end >= prompt_tokens_) {
    ++complete_;
    return Result::kComplete;
  }
  return Result::kPending;
}

RemoteStep DecideRemoteStep(const RemotePrefillState& s) {
  if (s.cancelled) {
    if (s.kv_done) return RemoteStep::kAbandon;
    return s.kv_cancel_sent ? RemoteStep::kWait : RemoteStep::kAbortKv;
  }
  if (s.kv_done) {
    if (!s.kv_ok) return RemoteStep::kFallBack;
    if (!s.call_done) return RemoteStep::kWait;
    return s.call_ok ? RemoteStep::kJoin : RemoteStep::kFallBack;
  }
  // The blocks are still reserved (and may be written): a failed call first aborts them.
  if (s.call_done && !s.call_ok && !s.kv_cancel_sent) return RemoteStep::kAbortKv;
  return RemoteStep::kWait;
}

absl::string_view FallbackReasonFor(const absl::Status& kv, const absl::Status& call,
                                    int http_status) {
  if (!call.ok() || (http_status != 0 && http_status != 200)) {
    if (call.code() == absl::StatusCode::kDeadlineExceeded || http_status == 504) {
      return "timeout";
    }
    if (http_status == 409) return "refused";
    if (http_status == 429 || http_status == 503) return "overloaded";
    if (http_status == 0) return "unreachable";
    return "prefill_error";
  }
  if (!kv.ok()) {
    if (kv.code() == absl::StatusCode::kDeadlineExceeded) return "lease_expired";
    if (kv.code() == absl::StatusCode::kDataLoss) return "corrupt";
    return "transfer_failed";
  }
  return "prefill_error";
}

KvStreamStart StartKvEventStream(uint64_t since, std::optional<uint64_t> consumer_epoch,
                                 uint64_t epoch, uint64_t oldest_kept, uint64_t last_id) {
  if (consumer_epoch.has_value() && *consumer_epoch != epoch) return {.snapshot = true};
  if (since > last_id) return {.snapshot = true};  // ids this epoch never issued
  // Events since+1 .. last_id must all still be kept.
  if (oldest_kept > 0 && since + 1 < oldest_kept) return {.snapshot = true};
  return {.snapshot = false, .resume_after = since};
}

absl::Duration RetryBackoff::Next() {
  absl::Duration delay = initial_;
  for (int i = 0; i < failures_ && delay < max_; ++i) delay *= 2;
  ++failures_;
  return std::min(delay, max_);
}

}  // namespace tandem::worker
