// The paged KV cache: a pool of fixed-size KV blocks with reference counts, a prefix cache keyed
// by chained block hashes with LRU eviction of unreferenced blocks, and the KV event stream the
// router's KV index consumes.
//
// Memory. Every block holds `block_size` token positions of every layer's keys and values. The
// pool's storage is one contiguous region: heap memory the pool allocates, or a region the caller
// provides (e.g. a shared-memory segment the KV transfer layer maps). The byte layout of a block
// is fixed and documented in docs/kv-layout.md:
//
//   block b      at storage + b * block_bytes
//   layer l      at + l * layer_block_bytes        (2 * kv_heads * B * head_dim * E bytes)
//   keys of h    at + h * B * head_dim * E         ([dim][slot]: transposed)
//   values of h  at + (kv_heads + h) * B * head_dim * E   ([slot][dim])
//
// where E is the element size of the layout's KvType: 4 for F32, 2 for BF16.
//
// so one block (all layers) is one contiguous span and one layer of a sequence is one span per
// block, both copied with memcpy.
//
// Prefix caching. A full block whose tokens are known is committed under its chained hash
// (HashKvBlock: XXH3-64 of the parent hash and the token ids, the same definition the router
// uses). A committed block whose last reference is released stays cached (evictable, LRU) until
// an allocation needs its memory; a later sequence with the same prefix acquires it instead.
//
// Events. Each commit appends a `stored` event, each eviction of a cached block a `removed`
// event, ClearCache a `cleared` event; event ids increase by one from 1. The last
// `event_history` events are kept so a consumer can resume after an id (EventsAfter) or fall back
// to Snapshot().
//
//   TANDEM_ASSIGN_OR_RETURN(auto pool, BlockPool::Create({.layout = layout,
//                                                         .budget_bytes = 512 << 20}));
//   TANDEM_ASSIGN_OR_RETURN(std::vector<BlockId> blocks, pool->Allocate(4));
//   pool->Commit(blocks[0], kRootBlockHash, HashKvBlock(kRootBlockHash, first_16_tokens));
//   pool->Release(blocks);
//
// Thread-safety: all methods are thread-safe (one internal mutex). Block memory is not guarded:
// whoever holds a reference to a block coordinates writes to it.
#pragma once

#include <cassert>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <span>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "core/block_hash.h"
#include "core/kv_type.h"

namespace tandem::engine {

using BlockId = int32_t;
using ::tandem::BlockHash;
using ::tandem::kRootBlockHash;
using ::tandem::KvType;

// The chained identity of a KV block (core/block_hash.h, the definition the router uses too).
inline BlockHash HashKvBlock(BlockHash parent, std::span<const int32_t> tokens) {
  return HashBlock(parent, tokens);
}
// The hashes of every full block of `tokens`.
inline std::vector<BlockHash> HashKvBlocks(std::span<const int32_t> tokens, int block_size) {
  return HashPromptBlocks(tokens, block_size);
}

// The shape of the KV data and the element type of its keys and values.
struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = 16;
  KvType type = KvType::kF32;

  int64_t element_bytes() const { return KvTypeBytes(type); }
  // Bytes of keys (or values) of one kv head of one layer of one block.
  int64_t head_block_bytes() const {
    return static_cast<int64_t>(block_size) * head_dim * element_bytes();
  }
  int64_t layer_block_bytes() const { return 2 * num_kv_heads * head_block_bytes(); }
  int64_t block_bytes() const { return num_layers * layer_block_bytes(); }
  // KV bytes one token occupies across all layers.
  int64_t token_bytes() const { return block_bytes() / block_size; }
};

struct BlockPoolOptions {
  KvLayout layout;
  // The memory budget: `budget_bytes`, or else `budget_fraction` of physical RAM.
  int64_t budget_bytes = 0;
  double budget_fraction = 0;
  // Caller-provided storage (e.g. shared memory): blocks are laid out from `memory`; the budget
  // is then min(budget, memory_bytes) (memory_bytes alone when no budget is given).
  uint8_t* memory = nullptr;
  int64_t memory_bytes = 0;
  bool enable_prefix_cache = true;
  // Events kept for EventsAfter().
  int64_t event_history = 1 << 16;
  // Writes the pool's own storage once at creation, so the whole budget is resident from the
  // start: no step stalls on first-use page faults (4 % of a 32-sequence step before), and a
  // machine that lacks the memory fails at start-up rather than while serving (as llama.cpp
  // clears its KV buffer and vLLM allocates its KV tensors up front). Caller-provided memory is
  // left as it is.
  bool prefault = true;
};

struct KvEvent {
  enum class Type : uint8_t { kStored, kRemoved, kCleared };
  Type type = Type::kStored;
  uint64_t event_id = 0;
  BlockHash parent_hash = kRootBlockHash;  // kStored: the block before block_hashes[0]
  std::vector<BlockHash> block_hashes;     // unused for kCleared
};

struct KvSnapshot {
  uint64_t event_id = 0;  // every event up to and including this one is reflected
  std::vector<BlockHash> block_hashes;
};

struct BlockPoolStats {
  int64_t total_blocks = 0;
  int64_t free_blocks = 0;        // never used or no longer cached
  int64_t cached_blocks = 0;      // unreferenced but holding a committed prefix (evictable)
  int64_t referenced_blocks = 0;  // held by at least one sequence
  int64_t prefix_lookups = 0;     // blocks looked up in AcquirePrefix
  int64_t prefix_hits = 0;        // of those, found cached
  int64_t evictions = 0;
};

class BlockPool {
 public:
  static absl::StatusOr<std::unique_ptr<BlockPool>> Create(const BlockPoolOptions& options);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  const KvLayout& layout() const { return layout_; }
  int64_t num_blocks() const { return num_blocks_; }
  int64_t storage_bytes() const { return num_blocks_ * layout_.block_bytes(); }
  const uint8_t* storage() const { return storage_; }
  bool prefix_cache_enabled() const { return prefix_cache_; }

  // Blocks an Allocate() could hand out now (free plus evictable cached ones).
  int64_t AvailableBlocks() const;

  // `count` blocks with reference count 1, evicting least recently used cached blocks when the
  // free list runs short. ResourceExhausted (and nothing allocated) when there are not enough.
  absl::StatusOr<std::vector<BlockId>> Allocate(int64_t count);
  void Retain(BlockId block);
  // Drops one reference; at zero a committed block becomes evictable, others become free.
  void Release(BlockId block);
  void Release(std::span<const BlockId> blocks);

  // How many leading hashes are cached (no side effects).
  int64_t MatchPrefix(std::span<const BlockHash> hashes) const;
  // Takes a reference to the cached blocks of the longest cached prefix of `hashes`.
  std::vector<BlockId> AcquirePrefix(std::span<const BlockHash> hashes);

  // Registers a filled, referenced block under `hash` (its parent's hash is `parent`) and
  // publishes a `stored` event. When another block already holds `hash` nothing changes (the
  // caller keeps its private copy). No-op when prefix caching is off.
  void Commit(BlockId block, BlockHash parent, BlockHash hash);
  // The same for a chain: blocks[i] holds hashes[i], the first one's parent is `parent`.
  void CommitChain(std::span<const BlockId> blocks, BlockHash parent,
                   std::span<const BlockHash> hashes);
  // Forgets every committed hash (referenced blocks keep their data) and publishes `cleared`.
  void ClearCache();

  // Events with id > after_id, oldest first. OutOfRange when some were already dropped from the
  // history (the consumer must take a Snapshot()).
  absl::Status EventsAfter(uint64_t after_id, std::vector<KvEvent>* out) const;
  uint64_t last_event_id() const;
  KvSnapshot Snapshot() const;

  BlockPoolStats Stats() const;
  int RefCount(BlockId block) const;

  // Block memory (see the layout above).
  uint8_t* BlockData(BlockId block) const { return storage_ + block * layout_.block_bytes(); }
  std::span<uint8_t> BlockSpan(BlockId block) const {
    return {BlockData(block), static_cast<size_t>(layout_.block_bytes())};
  }
  std::span<uint8_t> LayerSpan(BlockId block, int layer) const {
    return {BlockData(block) + layer * layout_.layer_block_bytes(),
            static_cast<size_t>(layout_.layer_block_bytes())};
  }
  // The keys (values) of one kv head of one layer of a block, as bytes: element (slot, d) of the
  // keys is element d * block_size + slot, of the values slot * head_dim + d.
  uint8_t* Keys(BlockId block, int layer, int kv_head) const {
    return BlockData(block) + layer * layout_.layer_block_bytes() +
           kv_head * layout_.head_block_bytes();
  }
  uint8_t* Values(BlockId block, int layer, int kv_head) const {
    return Keys(block, layer, layout_.num_kv_heads + kv_head);
  }
  // The same, typed; only valid for a layout of that type (checked in debug builds).
  float* KeysF32(BlockId block, int layer, int kv_head) const {
    assert(layout_.type == KvType::kF32);
    return reinterpret_cast<float*>(Keys(block, layer, kv_head));
  }
  float* ValuesF32(BlockId block, int layer, int kv_head) const {
    assert(layout_.type == KvType::kF32);
    return reinterpret_cast<float*>(Values(block, layer, kv_head));
  }
  uint16_t* KeysBf16(BlockId block, int layer, int kv_head) const {
    assert(layout_.type == KvType::kBF16);
    return reinterpret_cast<uint16_t*>(Keys(block, layer, kv_head));
  }
  uint16_t* ValuesBf16(BlockId block, int layer, int kv_head) const {
    assert(layout_.type == KvType::kBF16);
    return reinterpret_cast<uint16_t*>(Values(block, layer, kv_head));
  }

 private:
  struct BlockState {
    int32_t refs = 0;
    bool committed = false;
    BlockHash hash = 0;
    std::list<BlockId>::iterator lru_position;  // valid when refs == 0 && committed
  };

  BlockPool(const BlockPoolOptions& options, int64_t num_blocks, uint8_t* storage, bool owned);
  void PushEvent(KvEvent event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void ReleaseLocked(BlockId block) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void CommitLocked(BlockId block, BlockHash hash) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const KvLayout layout_;
  const int64_t num_blocks_;
  uint8_t* const storage_;
  const bool owns_storage_;
  const bool prefix_cache_;
  const int64_t event_history_;

  mutable absl::Mutex mutex_;
  std::vector<BlockState> blocks_ ABSL_GUARDED_BY(mutex_);
  std::vector<BlockId> free_ ABSL_GUARDED_BY(mutex_);
  std::list<BlockId> lru_ ABSL_GUARDED_BY(mutex_);  // evictable, least recently used first
  absl::flat_hash_map<BlockHash, BlockId> cached_ ABSL_GUARDED_BY(mutex_);
  std::deque<KvEvent> events_ ABSL_GUARDED_BY(mutex_);
  uint64_t next_event_id_ ABSL_GUARDED_BY(mutex_) = 1;
  mutable int64_t prefix_lookups_ ABSL_GUARDED_BY(mutex_) = 0;
  mutable int64_t prefix_hits_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t evictions_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t referenced_ ABSL_GUARDED_BY(mutex_) = 0;
};

// Checks that `hashes` are the chained hashes of the full blocks of `tokens` (DataLoss naming
// the first block that differs) — the import side's guard against KV for the wrong prompt.
absl::Status VerifyHashChain(std::span<const int32_t> tokens, int block_size,
                             std::span<const BlockHash> hashes);

}  // namespace tandem::engine
