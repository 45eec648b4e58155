// LoadForecast: the load the router itself has sent to each worker and that has not finished
// yet, known the moment a request is routed rather than when the worker next reports. Without
// it a burst of requests would all see the same stale state and land on one worker.
//
// A routed request counts, until OnFinished, its forecast KV blocks on its decode worker and
// its prompt blocks as "will be cached" on the decode worker (and on the prefill worker, which
// computes them); until OnPrefillDone (or OnFinished) it also counts one queued prefill job of
// its uncached tokens on its prefill worker. Prompt blocks shared by several in-flight
// requests on one decode worker count once there, as the engine's prefix cache shares them.
//
// Block hashes are chained, so holding block i implies holding blocks 0..i: the forecast
// records only every kAnchorStride-th prompt block and the last one ("anchors"), each standing
// for the blocks since the previous anchor. A predicted overlap is therefore exact at anchors
// and may fall short by up to kAnchorStride - 1 blocks between them (until the worker's own KV
// events report the exact figure), and a shared prefix ending between anchors may be counted
// up to kAnchorStride - 1 blocks too high; in exchange a 128-block prompt costs 33 map
// operations instead of 128 on each of routing and finishing.
//
//   forecast.OnRouted(request_id, {.decode_worker = d, .decode_blocks = 40,
//                                  .prefill_worker = p, .prefill_tokens = 2900,
//                                  .prompt_blocks = hashes});
//   ... first token arrives ...  forecast.OnPrefillDone(request_id);
//   ... stream ends ...          forecast.OnFinished(request_id);
//
// Thread-safety: not thread-safe; owned by the thread that owns the KvIndex.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "router/block_hash.h"
#include "router/kv_index.h"

namespace tandem::router {

struct RoutedLoad {
  WorkerId decode_worker = 0;
  int64_t decode_blocks = 0;                 // all its blocks, see ForecastDecodeBlocks
  std::optional<WorkerId> prefill_worker;    // set when disaggregated
  int64_t prefill_tokens = 0;                // uncached tokens the prefill worker computes
  std::span<const BlockHash> prompt_blocks;  // copied
};

class LoadForecast {
 public:
  static constexpr int kAnchorStride = 4;

  // kAlreadyExists when `request_id` is already in flight (finish it first, e.g. on migration).
  absl::Status OnRouted(uint64_t request_id, const RoutedLoad& load);
  // Releases the prefill job; no-op for unknown ids or when already released.
  void OnPrefillDone(uint64_t request_id);
  // Releases everything the request holds; no-op for unknown ids (finishing twice is harmless).
  void OnFinished(uint64_t request_id);

  // What the router has sent to `worker` and that has not finished.
  struct WorkerLoad {
    int64_t decode_blocks = 0;
    int32_t prefill_requests = 0;
    int64_t prefill_tokens = 0;
  };
  WorkerLoad LoadOf(WorkerId worker) const;
  int64_t DecodeBlocks(WorkerId worker) const;
  int32_t PrefillRequests(WorkerId worker) const;
  int64_t PrefillTokens(WorkerId worker) const;
  size_t InFlight() const { return requests_.size(); }

  // For each worker that in-flight requests will leave holding a prefix of `prompt_blocks`,
  // raises its entry in `scores` to that prefix length (adding it when absent).
  void MergePredictedOverlap(std::span<const BlockHash> prompt_blocks, OverlapScores* scores) const;

 private:
  // A recorded prompt block and how many blocks it stands for (those since the last anchor).
  struct Anchor {
    BlockHash hash;
    int32_t blocks;
  };
  struct Request {
    WorkerId decode_worker;
    int64_t extra_decode_blocks;  // beyond its full prompt blocks: tail and output
    std::optional<WorkerId> prefill_worker;
    int64_t prefill_tokens;
    bool prefill_pending;
    absl::InlinedVector<Anchor, 40> anchors;
  };
  using Load = WorkerLoad;
  // A worker that in-flight requests will leave holding an anchor block, with how many of them
  // hold it as their decode worker and as their prefill worker, and the blocks it was counted
  // for in the decode load.
  struct Holder {
    WorkerId worker;
    int32_t decode_refs;
    int32_t prefill_refs;
    int32_t decode_counted_blocks;
  };
  using Holders = absl::InlinedVector<Holder, 2>;

  void AddPredicted(WorkerId worker, std::span<const Anchor> anchors, bool decode);
  void DropPredicted(WorkerId worker, std::span<const Anchor> anchors, bool decode);
  void ReleasePrefill(Request& request);

  absl::flat_hash_map<uint64_t, Request> requests_;
  absl::flat_hash_map<WorkerId, Load> load_;
  absl::flat_hash_map<BlockHash, Holders> predicted_;
};

}  // namespace tandem::router
