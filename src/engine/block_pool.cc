#include "engine/block_pool.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "engine/page_memory.h"

namespace tandem::engine {

absl::Status VerifyHashChain(std::span<const int32_t> tokens, int block_size,
                             std::span<const BlockHash> hashes) {
  const std::vector<BlockHash> expected = HashKvBlocks(tokens, block_size);
  if (hashes.size() > expected.size()) {
    return absl::DataLossError(absl::StrCat("KV import carries ", hashes.size(),
                                            " block hashes but the ", tokens.size(),
                                            " tokens fill only ", expected.size(), " blocks"));
  }
  for (size_t i = 0; i < hashes.size(); ++i) {
    if (hashes[i] != expected[i]) {
      return absl::DataLossError(absl::StrCat("KV import block ", i, " has hash ", hashes[i],
                                              " but its tokens hash to ", expected[i],
                                              ": the KV belongs to a different prompt"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BlockPool>> BlockPool::Create(const BlockPoolOptions& options) {
  const KvLayout& layout = options.layout;
  if (layout.num_layers <= 0 || layout.num_kv_heads <= 0 || layout.head_dim <= 0 ||
      layout.block_size <= 0 || layout.block_size > 4096) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV layout needs positive layers, kv heads and head dim and a block size in 1..4096; got ",
        layout.num_layers, " layers, ", layout.num_kv_heads, " kv heads, head dim ",
        layout.head_dim, ", block size ", layout.block_size));
  }
  if (layout.type != KvType::kF32 && layout.type != KvType::kBF16) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV layout has unknown element type ", static_cast<int>(layout.type)));
  }
  int64_t budget = options.budget_bytes;
  if (budget <= 0 && options.budget_fraction > 0) {
    if (options.budget_fraction > 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("KV budget fraction must be in (0, 1], got ", options.budget_fraction));
    }
    const double ram = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGESIZE);
    budget = static_cast<int64_t>(ram * options.budget_fraction);
  }
  if (options.memory != nullptr) {
    budget = budget > 0 ? std::min(budget, options.memory_bytes) : options.memory_bytes;
  }
  if (budget <= 0) {
    return absl::InvalidArgumentError(
        "KV cache needs a memory budget: set budget_bytes or budget_fraction (or provide memory)");
  }
  const int64_t num_blocks = budget / layout.block_bytes();
  if (num_blocks < 1) {
    return absl::InvalidArgumentError(absl::StrCat("KV budget of ", budget,
                                                   " bytes holds no block; one block needs ",
                                                   layout.block_bytes(), " bytes"));
  }
  if (num_blocks > INT32_MAX) {
    return absl::InvalidArgumentError("KV budget holds more than 2^31 blocks; lower it");
  }
  uint8_t* storage = options.memory;
  const bool owned = storage == nullptr;
  if (owned) {
    const size_t bytes =
        static_cast<size_t>((num_blocks * layout.block_bytes() + 4095) / 4096 * 4096);
    // Aligned to a huge page, and its whole huge pages marked for them: a step reads blocks
    // from all over the pool, and with 4 KiB pages each block of each layer and head is on a
    // page of its own for the TLB. (No speed change was measurable on the development host,
    // whose batched attention is bound by memory reads; it costs nothing.) The tail past the
    // last whole huge page stays in small pages, so RSS stays the budget.
    // (posix_memalign: aligned_alloc wants the size a multiple of the alignment.)
    void* allocated = nullptr;
    if (::posix_memalign(&allocated, kHugePageBytes, bytes) == 0) {
      storage = static_cast<uint8_t*>(allocated);
    }
    if (storage == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes for the KV cache"));
    }
    AdviseHugePages(storage, bytes);
    if (options.prefault) std::memset(storage, 0, bytes);
  }
  return std::unique_ptr<BlockPool>(new BlockPool(options, num_blocks, storage, owned));
}

BlockPool::BlockPool(const BlockPoolOptions& options, int64_t num_blocks, uint8_t* storage,
                     bool owned)
    : layout_(options.layout),
      num_blocks_(num_blocks),
      storage_(storage),
      owns_storage_(owned),
      prefix_cache_(options.enable_prefix_cache),
      event_history_(std::max<int64_t>(1, options.event_history)) {
  absl::MutexLock lock(&mutex_);
  blocks_.resize(num_blocks);
  free_.reserve(num_blocks);
  // Hand out low ids first (pop from the back).
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<BlockId>(b));
}

BlockPool::~BlockPool() {
  if (owns_storage_) std::free(storage_);
}

int64_t BlockPool::AvailableBlocks() const {
  absl::MutexLock lock(&mutex_);
  return static_cast<int64_t>(free_.size() + lru_.size());
}

absl::StatusOr<std::vector<BlockId>> BlockPool::Allocate(int64_t count) {
  absl::MutexLock lock(&mutex_);
  if (count < 0) return absl::InvalidArgumentError("negative block count");
  const int64_t available = static_cast<int64_t>(free_.size() + lru_.size());
  if (count > available) {
    return absl::ResourceExhaustedError(absl::StrCat("KV pool has ", available, " of ", num_blocks_,
                                                     " blocks available, ", count, " requested"));
  }
  std::vector<BlockId> result;
  result.reserve(count);
  KvEvent removed{.type = KvEvent::Type::kRemoved};
  while (static_cast<int64_t>(result.size()) < count) {
    BlockId block;
    if (!free_.empty()) {
      block = free_.back();
      free_.pop_back();
    } else {
      block = lru_.front();
      lru_.pop_front();
      BlockState& state = blocks_[block];
      cached_.erase(state.hash);
      removed.block_hashes.push_back(state.hash);
      state.committed = false;
      ++evictions_;
    }
    blocks_[block].refs = 1;
    ++referenced_;
    result.push_back(block);
  }
  if (!removed.block_hashes.empty()) PushEvent(std::move(removed));
  return result;
}

void BlockPool::Retain(BlockId block) {
  absl::MutexLock lock(&mutex_);
  BlockState& state = blocks_.at(block);
  if (state.refs == 0) {
    if (state.committed) lru_.erase(state.lru_position);
    ++referenced_;
  }
  ++state.refs;
}

void BlockPool::ReleaseLocked(BlockId block) {
  BlockState& state = blocks_.at(block);
  if (state.refs <= 0) {
    // A double release would hand one block to two sequences: refuse loudly.
    std::abort();
  }
  if (--state.refs > 0) return;
  --referenced_;
  if (state.committed) {
    lru_.push_back(block);
    state.lru_position = std::prev(lru_.end());
  } else {
    free_.push_back(block);
  }
}

void BlockPool::Release(BlockId block) {
  absl::MutexLock lock(&mutex_);
  ReleaseLocked(block);
}

void BlockPool::Release(std::span<const BlockId> blocks) {
  absl::MutexLock lock(&mutex_);
  // Release the tail first so a sequence's last blocks are evicted before its first ones
  // (a prefix is only useful from its start).
  for (auto it = blocks.rbegin(); it != blocks.rend(); ++it) ReleaseLocked(*it);
}

int64_t BlockPool::MatchPrefix(std::span<const BlockHash> hashes) const {
  absl::MutexLock lock(&mutex_);
  if (!prefix_cache_) return 0;
  int64_t matched = 0;
  for (BlockHash hash : hashes) {
    if (!cached_.contains(hash)) break;
    ++matched;
  }
  return matched;
}

std::vector<BlockId> BlockPool::AcquirePrefix(std::span<const BlockHash> hashes) {
  absl::MutexLock lock(&mutex_);
  std::vector<BlockId> result;
  if (!prefix_cache_) return result;
  prefix_lookups_ += static_cast<int64_t>(hashes.size());
  for (BlockHash hash : hashes) {
    auto it = cached_.find(hash);
    if (it == cached_.end()) break;
    BlockState& state = blocks_[it->second];
    if (state.refs == 0) {
      lru_.erase(state.lru_position);
      ++referenced_;
    }
    ++state.refs;
    result.push_back(it->second);
  }
  prefix_hits_ += static_cast<int64_t>(result.size());
  return result;
}

void BlockPool::CommitLocked(BlockId block, BlockHash hash) {
  BlockState& state = blocks_.at(block);
  state.committed = true;
  state.hash = hash;
  cached_.emplace(hash, block);
}

void BlockPool::Commit(BlockId block, BlockHash parent, BlockHash hash) {
  const BlockId blocks[] = {block};
  const BlockHash hashes[] = {hash};
  CommitChain(blocks, parent, hashes);
}

void BlockPool::CommitChain(std::span<const BlockId> blocks, BlockHash parent,
                            std::span<const BlockHash> hashes) {
  if (!prefix_cache_) return;
  absl::MutexLock lock(&mutex_);
  KvEvent stored{.type = KvEvent::Type::kStored, .parent_hash = parent};
  const size_t count = std::min(blocks.size(), hashes.size());
  for (size_t i = 0; i < count; ++i) {
    const BlockState& state = blocks_.at(blocks[i]);
    if (state.committed || cached_.contains(hashes[i])) {
      // Already known (this block or a twin): a stored event must chain without gaps, so flush
      // what we have and restart the chain after this block.
      if (!stored.block_hashes.empty()) PushEvent(std::move(stored));
      stored = KvEvent{.type = KvEvent::Type::kStored, .parent_hash = hashes[i]};
      continue;
    }
    CommitLocked(blocks[i], hashes[i]);
    stored.block_hashes.push_back(hashes[i]);
  }
  if (!stored.block_hashes.empty()) PushEvent(std::move(stored));
}

void BlockPool::ClearCache() {
  absl::MutexLock lock(&mutex_);
  for (BlockId block : lru_) {
    blocks_[block].committed = false;
    free_.push_back(block);
  }
  lru_.clear();
  for (auto& [hash, block] : cached_) blocks_[block].committed = false;
  cached_.clear();
  PushEvent(KvEvent{.type = KvEvent::Type::kCleared});
}

void BlockPool::PushEvent(KvEvent event) {
  event.event_id = next_event_id_++;
  events_.push_back(std::move(event));
  while (static_cast<int64_t>(events_.size()) > event_history_) events_.pop_front();
}

absl::Status BlockPool::EventsAfter(uint64_t after_id, std::vector<KvEvent>* out) const {
  absl::MutexLock lock(&mutex_);
  out->clear();
  if (after_id + 1 >= next_event_id_) return absl::OkStatus();
  const uint64_t oldest = events_.empty() ? next_event_id_ : events_.front().event_id;
  if (after_id + 1 < oldest) {
    return absl::OutOfRangeError(absl::StrCat("KV events after ", after_id,
                                              " are no longer kept (oldest is ", oldest,
                                              "); take a snapshot"));
  }
  for (auto it = events_.begin() + static_cast<int64_t>(after_id + 1 - oldest); it != events_.end();
       ++it) {
    out->push_back(*it);
  }
  return absl::OkStatus();
}

uint64_t BlockPool::last_event_id() const {
  absl::MutexLock lock(&mutex_);
  return next_event_id_ - 1;
}

KvSnapshot BlockPool::Snapshot() const {
  absl::MutexLock lock(&mutex_);
  KvSnapshot snapshot{.event_id = next_event_id_ - 1};
  snapshot.block_hashes.reserve(cached_.size());
  for (const auto& [hash, block] : cached_) snapshot.block_hashes.push_back(hash);
  std::sort(snapshot.block_hashes.begin(), snapshot.block_hashes.end());
  return snapshot;
}

BlockPoolStats BlockPool::Stats() const {
  absl::MutexLock lock(&mutex_);
  return {.total_blocks = num_blocks_,
          .free_blocks = static_cast<int64_t>(free_.size()),
          .cached_blocks = static_cast<int64_t>(lru_.size()),
          .referenced_blocks = referenced_,
          .prefix_lookups = prefix_lookups_,
          .prefix_hits = prefix_hits_,
          .evictions = evictions_};
}

int BlockPool::RefCount(BlockId block) const {
  absl::MutexLock lock(&mutex_);
  return blocks_.at(block).refs;
}

}  // namespace tandem::engine
