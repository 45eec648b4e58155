#include "worker/decisions.h"

#include <algorithm>

namespace tandem::worker {

LayerPushTracker::LayerPushTracker(int num_layers, int64_t prompt_tokens, int64_t block_size,
                                   int64_t first_block, int64_t num_blocks)
    : prompt_tokens_(prompt_tokens),
      block_size_(std::max<int64_t>(1, block_size)),
      first_block_(first_block),
      num_blocks_(num_blocks),
      end_(num_layers, -1),
      pushed_(num_layers, 0) {}

LayerPushTracker::Step LayerPushTracker::OnLayer(int layer, int64_t start, int64_t count) {
  if (layer < 0 || layer >= static_cast<int>(end_.size()) || count <= 0) return {};
  int64_t& end = end_[layer];
  if (end >= 0 && start < end) return {.result = Result::kRestarted};
  if (end >= prompt_tokens_) return {};  // generation past the prompt
  if (layer == 0) computed_ += std::min(start + count, prompt_tokens_) - start;
  end = start + count;
  const bool layer_done = end >= prompt_tokens_;
  // Blocks of the sequence whose every position is final for this layer.
  const int64_t final_blocks =
      layer_done ? (prompt_tokens_ + block_size_ - 1) / block_size_ : end / block_size_;
  const int64_t ready = std::clamp<int64_t>(final_blocks - first_block_, 0, num_blocks_);
  Step step;
  int64_t& pushed = pushed_[layer];
  if (ready > pushed) {
    step = {.result = Result::kPush, .first = pushed, .count = ready - pushed};
    pushed = ready;
  }
  if (layer_done && pushed == num_blocks_) ++complete_;
  return step;
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
