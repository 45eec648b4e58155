// KvIndex: which worker holds which KV cache blocks, rebuilt from each worker's stream of KV
// events, and the query the router asks on every request: "for this prompt's block-hash chain,
// how many leading blocks does each worker already hold?"
//
// Event streams. Every worker's engine publishes `stored` (new full blocks, by chained hash),
// `removed` (evicted hashes) and `cleared` (everything dropped) events. Each carries the
// worker's epoch (its process incarnation; a restart has a larger one) and an event id that
// starts at 1 in each epoch and grows by exactly 1 per event. The index applies events in id
// order and watches for trouble:
//   - an id at or below the last applied one is a duplicate and is ignored;
//   - an id beyond the next expected one is a gap (an event was lost): the worker is marked
//     "needs resync", later events are buffered (bounded), and the worker keeps answering with
//     the blocks it had before the gap until a snapshot arrives;
//   - a larger epoch means the worker restarted: its blocks are dropped at once and the new
//     epoch's stream must start at id 1 (otherwise it needs a resync too);
//   - a smaller epoch is a stale message from a dead incarnation and is ignored.
// A snapshot (every hash the worker holds as of event id N) replaces the worker's blocks; the
// buffered events after N are then replayed. Fetching the snapshot is the caller's job: it polls
// PendingResyncs() and calls ApplySnapshot() with the answer.
//
// Layout. One hash map from block hash to the set of workers holding it. Worker sets are
// bitsets over dense worker slots: inline in the map value when at most 64 workers are allowed,
// otherwise in a side arena. 1,000,000 blocks cost about 34 MB at 64 workers.
//
//   KvIndex index({.max_workers = 64});
//   index.Apply(/*worker=*/7, KvEvent{.type = KvEvent::Type::kStored, .epoch = 1,
//                                      .event_id = 1, .block_hashes = {h0, h1}});
//   OverlapScores overlap;
//   index.FindOverlap(HashPromptBlocks(prompt, 16), &overlap);  // {{7, 2}} if prompt starts h0,h1
//   for (const ResyncRequest& r : index.PendingResyncs()) { /* fetch snapshot, ApplySnapshot */ }
//
// Thread-safety: not thread-safe. One thread owns the index (the router posts events and
// queries to it); the simulator drives it from its event loop.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/block_hash.h"

namespace tandem::router {

// Identifies a worker to the router's pure cores; the registry maps names to these.
using WorkerId = uint64_t;

// One KV event of one worker, as the router receives it.
struct KvEvent {
  enum class Type : uint8_t {
    kStored = 0,   // block_hashes now cached (chained; parent_hash precedes block_hashes[0])
    kRemoved = 1,  // block_hashes evicted
    kCleared = 2,  // every block dropped (block_hashes unused)
  };
  Type type = Type::kStored;
  uint64_t epoch = 0;
  uint64_t event_id = 0;
  // For kStored: the hash of the block before block_hashes[0] (kRootParentHash at the start of
  // a sequence). Carried for diagnostics; chained hashes already encode the whole prefix.
  BlockHash parent_hash = kRootParentHash;
  std::vector<BlockHash> block_hashes;
};

// Every block a worker holds as of `event_id` (all events up to and including it applied).
struct KvSnapshot {
  uint64_t epoch = 0;
  uint64_t event_id = 0;
  std::vector<BlockHash> block_hashes;
};

// What Apply() did with an event.
enum class ApplyOutcome {
  kApplied,      // in order; the index changed
  kDuplicate,    // id already applied in this epoch; ignored
  kStaleEpoch,   // from an older incarnation of the worker; ignored
  kNeedsResync,  // a gap (now or earlier) in this worker's stream; buffered until a snapshot
};
std::string_view ApplyOutcomeName(ApplyOutcome outcome);

// A worker whose stream has a gap: the caller should fetch its snapshot for `epoch`.
struct ResyncRequest {
  WorkerId worker = 0;
  uint64_t epoch = 0;
  uint64_t last_applied_event_id = 0;  // the snapshot must be at this id or later
};

// Per worker, the number of leading prompt blocks it holds; workers holding none are absent.
struct OverlapScores {
  std::vector<std::pair<WorkerId, int32_t>> blocks;
  // The overlap of `worker`, 0 when absent (linear scan; the list is short).
  int32_t For(WorkerId worker) const;
  void Clear() { blocks.clear(); }
};

struct KvIndexOptions {
  // Upper bound on workers tracked at once (1..4096). At most 64 keeps worker sets inline.
  int max_workers = 64;
  // Events buffered per worker while it waits for a snapshot; the oldest are dropped beyond
  // this (a replay then finds the gap again and asks for a newer snapshot).
  size_t max_buffered_events = 65536;
};

// Counters for metrics and tests; they only grow.
struct KvIndexStats {
  uint64_t events_applied = 0;
  uint64_t duplicates = 0;
  uint64_t stale_epoch_events = 0;
  uint64_t gaps = 0;           // gaps detected (each triggers a resync)
  uint64_t epoch_changes = 0;  // restarts seen (worker blocks dropped)
  uint64_t snapshots_applied = 0;
  uint64_t buffered_events_dropped = 0;
  uint64_t removed_unknown = 0;  // `removed` for a block the worker was not known to hold
};

class KvIndex {
 public:
  // `options` must be valid (see ValidateOptions); invalid values are clamped into range.
  explicit KvIndex(KvIndexOptions options = {});

  // Why an options struct is unusable, naming the field and the accepted range.
  static absl::Status ValidateOptions(const KvIndexOptions& options);

  KvIndex(const KvIndex&) = delete;
  KvIndex& operator=(const KvIndex&) = delete;

  // Applies one event of `worker` (registered on first sight). Errors: kResourceExhausted when
  // `worker` is new and max_workers are already tracked; kInvalidArgument for an unknown event
  // type. Everything else (gaps, duplicates, restarts) is an outcome, not an error.
  absl::StatusOr<ApplyOutcome> Apply(WorkerId worker, const KvEvent& event);

  // Replaces `worker`'s blocks with `snapshot`, then replays buffered events newer than it.
  // Errors: kFailedPrecondition for a snapshot from an older epoch than already seen;
  // kResourceExhausted as for Apply.
  absl::Status ApplySnapshot(WorkerId worker, const KvSnapshot& snapshot);

  // Forgets `worker` (left the cluster): its blocks, cursor and buffer. No-op when unknown.
  void RemoveWorker(WorkerId worker);

  // Writes, for each worker holding at least the first block of `prompt_blocks`, how many
  // leading blocks it holds (the match stops at the first block it lacks).
  void FindOverlap(std::span<const BlockHash> prompt_blocks, OverlapScores* out) const;

  // Workers whose stream has a gap, in slot order.
  std::vector<ResyncRequest> PendingResyncs() const;
  bool NeedsResync(WorkerId worker) const;

  struct Cursor {
    uint64_t epoch = 0;
    uint64_t last_applied_event_id = 0;
    bool needs_resync = false;
    size_t buffered_events = 0;
  };
  std::optional<Cursor> CursorOf(WorkerId worker) const;

  bool Holds(WorkerId worker, BlockHash hash) const;
  int64_t BlockCount(WorkerId worker) const;               // 0 when unknown
  std::vector<BlockHash> BlocksOf(WorkerId worker) const;  // unordered; scans the whole index
  size_t DistinctBlocks() const { return blocks_.size(); }
  size_t WorkerCount() const { return slot_of_.size(); }
  const KvIndexStats& stats() const { return stats_; }

 private:
  struct WorkerState {
    WorkerId id = 0;
    bool in_use = false;
    uint64_t epoch = 0;
    uint64_t last_event_id = 0;
    bool needs_resync = false;
    int64_t block_count = 0;
    std::deque<KvEvent> buffered;
  };

  absl::StatusOr<int> SlotFor(WorkerId worker);
  int FindSlot(WorkerId worker) const;
  ApplyOutcome ApplyToSlot(int slot, const KvEvent& event);
  void ApplyInOrder(int slot, const KvEvent& event);
  void Store(int slot, BlockHash hash);
  void Remove(int slot, BlockHash hash);
  void ClearSlot(int slot);
  void Buffer(WorkerState& state, const KvEvent& event);

  // The worker bitset of a map entry: the value itself when words_ == 1, else an arena row.
  uint64_t* Bits(uint64_t& value) { return words_ == 1 ? &value : &arena_[value * words_]; }
  const uint64_t* Bits(const uint64_t& value) const {
    return words_ == 1 ? &value : &arena_[value * words_];
  }
  uint64_t NewEntry();             // a zeroed bitset; returns the map value to store
  void FreeEntry(uint64_t value);  // returns an arena row to the free list
  static bool AllZero(const uint64_t* bits, int words);

  KvIndexOptions options_;
  int words_;  // 64-bit words per worker bitset
  absl::flat_hash_map<BlockHash, uint64_t> blocks_;
  std::vector<uint64_t> arena_;      // words_ > 1 only
  std::vector<uint64_t> free_rows_;  // arena rows to reuse
  std::vector<WorkerState> slots_;
  absl::flat_hash_map<WorkerId, int> slot_of_;
  std::vector<uint64_t> live_mask_;  // slots in use
  KvIndexStats stats_;
};

}  // namespace tandem::router
