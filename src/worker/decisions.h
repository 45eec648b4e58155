// The worker's pure decisions, kept apart from sockets, threads and clocks so they are tested
// alone (docs/protocols.md, "Worker control API"):
//
//   - LayerPushTracker: on the prefill worker, which layers of the transfer window are final
//     after each prefill chunk, so each layer is pushed once, as soon as it is complete;
//   - DecideRemoteStep: on the decode worker, what to do next with a request whose prompt a
//     prefill worker computes, given what the KV transfer and the prefill call said so far;
//   - FallbackReasonFor: the `reason` label of tandem_worker_prefill_fallbacks_total;
//   - StartKvEventStream: resume a KV event stream or start it with a snapshot;
//   - RetryBackoff: the router registration's retry delays.
//
// Thread-safety: plain values; use one object from one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tandem::worker {

// Tracks, per layer, how far the prompt's KV is final on the prefill side, and which blocks of the
// transfer window can be pushed after each computed chunk. The engine reports each computed chunk
// of each layer in order (positions before the first report come from the prefix cache and are
// final already). A block is final for a layer once the layer's KV covers all its positions (the
// prompt's last, partial block once the layer reaches the prompt's end), so every chunk of a long,
// chunked prefill pushes its full blocks layer by layer while the next layers and chunks compute;
// each (layer, block) is pushed exactly once.
class LayerPushTracker {
 public:
  // The transfer window is blocks [first_block, first_block + num_blocks) of the sequence, whose
  // blocks hold `block_size` tokens each.
  LayerPushTracker(int num_layers, int64_t prompt_tokens, int64_t block_size, int64_t first_block,
                   int64_t num_blocks);

  enum class Result {
    kNothing,   // no block of the window became final for this layer
    kPush,      // push window blocks [first, first + count) of this layer now
    kRestarted  // positions were reported again (the sequence was recomputed): stop the push
  };
  struct Step {
    Result result = Result::kNothing;
    int64_t first = 0;  // window-relative
    int64_t count = 0;
    friend bool operator==(const Step&, const Step&) = default;
  };
  Step OnLayer(int layer, int64_t start, int64_t count);
  // Every layer reached the prompt's end and every block of the window was pushed.
  bool AllComplete() const { return complete_ == static_cast<int>(end_.size()); }
  // Tokens computed (not from the prefix cache), from the first report of layer 0.
  int64_t computed_tokens() const { return computed_; }

 private:
  int64_t prompt_tokens_;
  int64_t block_size_;
  int64_t first_block_;
  int64_t num_blocks_;
  std::vector<int64_t> end_;     // per layer: positions [.., end) are final; -1 before any report
  std::vector<int64_t> pushed_;  // per layer: window blocks [0, pushed) were pushed
  int complete_ = 0;
  int64_t computed_ = 0;
};

// The state of a disaggregated request on the decode worker.
struct RemotePrefillState {
  bool cancelled = false;       // client gone or /v1/cancel
  bool kv_cancel_sent = false;  // the reservation was told to abort
  bool kv_done = false;         // the reservation ended (every block arrived, or failed)
  bool kv_ok = false;
  bool call_done = false;  // POST /v1/prefill answered (or failed)
  bool call_ok = false;
};

enum class RemoteStep {
  kWait,      // nothing to do until the next event
  kAbortKv,   // abort the reservation (its end arrives later as kv_done)
  kJoin,      // every block arrived and the first token is known: join the decode batch
  kFallBack,  // the remote prefill failed: release the reservation, prefill locally or fail
  kAbandon,   // cancelled and the reservation ended: release it and finish as cancelled
};
RemoteStep DecideRemoteStep(const RemotePrefillState& state);

// Label for tandem_worker_prefill_fallbacks_total from the first failure seen: `kv` is the
// reservation's end status (OK when it did not fail), `call` the prefill call's status,
// `http_status` its HTTP status (0 when no answer arrived).
absl::string_view FallbackReasonFor(const absl::Status& kv, const absl::Status& call,
                                    int http_status);

// How a /v1/kv/events subscription starts.
struct KvStreamStart {
  bool snapshot = false;      // send a snapshot first, then events after it
  uint64_t resume_after = 0;  // otherwise: events with id > resume_after
};
// `since`: the last event id the consumer has; `consumer_epoch`: the epoch it has them from
// (unset: this worker's). `oldest_kept`: the id of the oldest event still kept (0 when none
// was ever dropped); `last_id`: the newest event id.
KvStreamStart StartKvEventStream(uint64_t since, std::optional<uint64_t> consumer_epoch,
                                 uint64_t epoch, uint64_t oldest_kept, uint64_t last_id);

// Exponential backoff with a cap: 1 s, 2 s, 4 s, ... `max`; Reset() after a success.
class RetryBackoff {
 public:
  RetryBackoff(absl::Duration initial, absl::Duration max) : initial_(initial), max_(max) {}
  absl::Duration Next();
  void Reset() { failures_ = 0; }
  int failures() const { return failures_; }

 private:
  absl::Duration initial_, max_;
  int failures_ = 0;
};

}  // namespace tandem::worker
