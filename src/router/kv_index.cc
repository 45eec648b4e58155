#include "router/kv_index.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"

namespace tandem::router {

namespace {

constexpr int kMaxWorkersLimit = 4096;
constexpr int kMaxWords = kMaxWorkersLimit / 64;

}  // namespace

std::string_view ApplyOutcomeName(ApplyOutcome outcome) {
  switch (outcome) {
    case ApplyOutcome::kApplied:
      return "applied";
    case ApplyOutcome::kDuplicate:
      return "duplicate";
    case ApplyOutcome::kStaleEpoch:
      return "stale_epoch";
    case ApplyOutcome::kNeedsResync:
      return "needs_resync";
  }
  return "unknown";
}

int32_t OverlapScores::For(WorkerId worker) const {
  for (const auto& [id, count] : blocks) {
    if (id == worker) return count;
  }
  return 0;
}

absl::Status KvIndex::ValidateOptions(const KvIndexOptions& options) {
  if (options.max_workers < 1 || options.max_workers > kMaxWorkersLimit) {
    return absl::InvalidArgumentError(absl::StrCat("kv index: max_workers is ", options.max_workers,
                                                   ", expected 1..", kMaxWorkersLimit));
  }
  if (options.max_buffered_events < 1) {
    return absl::InvalidArgumentError(
        "kv index: max_buffered_events is 0, expected at least 1 (events wait there during a "
        "resync)");
  }
  return absl::OkStatus();
}

KvIndex::KvIndex(KvIndexOptions options) : options_(options) {
  options_.max_workers = std::clamp(options_.max_workers, 1, kMaxWorkersLimit);
  options_.max_buffered_events = std::max<size_t>(options_.max_buffered_events, 1);
  words_ = (options_.max_workers + 63) / 64;
  slots_.resize(static_cast<size_t>(words_) * 64);
  live_mask_.assign(words_, 0);
}

bool KvIndex::AllZero(const uint64_t* bits, int words) {
  for (int w = 0; w < words; ++w) {
    if (bits[w] != 0) return false;
  }
  return true;
}

uint64_t KvIndex::NewEntry() {
  if (words_ == 1) return 0;
  uint64_t row;
  if (!free_rows_.empty()) {
    row = free_rows_.back();
    free_rows_.pop_back();
    std::fill_n(&arena_[row * words_], words_, 0);
  } else {
    row = arena_.size() / words_;
    arena_.resize(arena_.size() + words_, 0);
  }
  return row;
}

void KvIndex::FreeEntry(uint64_t value) {
  if (words_ > 1) free_rows_.push_back(value);
}

int KvIndex::FindSlot(WorkerId worker) const {
  auto it = slot_of_.find(worker);
  return it == slot_of_.end() ? -1 : it->second;
}

absl::StatusOr<int> KvIndex::SlotFor(WorkerId worker) {
  if (int slot = FindSlot(worker); slot >= 0) return slot;
  if (static_cast<int>(slot_of_.size()) >= options_.max_workers) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "kv index: cannot track worker ", worker, ": already tracking ", slot_of_.size(),
        " workers (max_workers); raise max_workers or remove "
        "departed workers"));
  }
  for (int slot = 0; slot < options_.max_workers; ++slot) {
    if (slots_[slot].in_use) continue;
    WorkerState& state = slots_[slot];
    state = WorkerState{};
    state.id = worker;
    state.in_use = true;
    slot_of_[worker] = slot;
    live_mask_[slot / 64] |= uint64_t{1} << (slot % 64);
    return slot;
  }
  return absl::InternalError("kv index: no free slot although under max_workers");
}

void KvIndex::Store(int slot, BlockHash hash) {
  auto [it, inserted] = blocks_.try_emplace(hash, 0);
  if (inserted) it->second = NewEntry();
  uint64_t* bits = Bits(it->second);
  const uint64_t bit = uint64_t{1} << (slot % 64);
  if ((bits[slot / 64] & bit) == 0) {
    bits[slot / 64] |= bit;
    ++slots_[slot].block_count;
  }
}

void KvIndex::Remove(int slot, BlockHash hash) {
  auto it = blocks_.find(hash);
  const uint64_t bit = uint64_t{1} << (slot % 64);
  if (it == blocks_.end() || (Bits(it->second)[slot / 64] & bit) == 0) {
    ++stats_.removed_unknown;
    return;
  }
  uint64_t* bits = Bits(it->second);
  bits[slot / 64] &= ~bit;
  --slots_[slot].block_count;
  if (AllZero(bits, words_)) {
    FreeEntry(it->second);
    blocks_.erase(it);
  }
}

void KvIndex::ClearSlot(int slot) {
  WorkerState& state = slots_[slot];
  if (state.block_count == 0) return;
  // A full scan: restarts and resyncs are rare, and a per-worker hash list would double the
  // memory and the ingestion cost of every event.
  const int word = slot / 64;
  const uint64_t bit = uint64_t{1} << (slot % 64);
  for (auto it = blocks_.begin(); it != blocks_.end();) {
    uint64_t* bits = Bits(it->second);
    if ((bits[word] & bit) != 0) {
      bits[word] &= ~bit;
      if (AllZero(bits, words_)) {
        FreeEntry(it->second);
        blocks_.erase(it++);
        continue;
      }
    }
    ++it;
  }
  state.block_count = 0;
}

void KvIndex::Buffer(WorkerState& state, const KvEvent& event) {
  if (state.buffered.size() >= options_.max_buffered_events) {
    state.buffered.pop_front();
    ++stats_.buffered_events_dropped;
  }
  state.buffered.push_back(event);
}

void KvIndex::ApplyInOrder(int slot, const KvEvent& event) {
  switch (event.type) {
    case KvEvent::Type::kStored:
      for (BlockHash hash : event.block_hashes) Store(slot, hash);
      break;
    case KvEvent::Type::kRemoved:
      for (BlockHash hash : event.block_hashes) Remove(slot, hash);
      break;
    case KvEvent::Type::kCleared:
      ClearSlot(slot);
      break;
  }
  slots_[slot].last_event_id = event.event_id;
  ++stats_.events_applied;
}

ApplyOutcome KvIndex::ApplyToSlot(int slot, const KvEvent& event) {
  WorkerState& state = slots_[slot];
  if (event.epoch < state.epoch) {
    ++stats_.stale_epoch_events;
    return ApplyOutcome::kStaleEpoch;
  }
  if (event.epoch > state.epoch) {
    // A new incarnation: nothing the old one cached survives it.
    if (state.epoch != 0 || state.last_event_id != 0 || state.block_count != 0) {
      ++stats_.epoch_changes;
    }
    ClearSlot(slot);
    state.epoch = event.epoch;
    state.last_event_id = 0;
    state.needs_resync = false;
    state.buffered.clear();
  }
  if (state.needs_resync) {
    if (event.event_id > state.last_event_id) Buffer(state, event);
    return ApplyOutcome::kNeedsResync;
  }
  if (event.event_id <= state.last_event_id) {
    ++stats_.duplicates;
    return ApplyOutcome::kDuplicate;
  }
  if (event.event_id != state.last_event_id + 1) {
    ++stats_.gaps;
    state.needs_resync = true;
    Buffer(state, event);
    return ApplyOutcome::kNeedsResync;
  }
  ApplyInOrder(slot, event);
  return ApplyOutcome::kApplied;
}

absl::StatusOr<ApplyOutcome> KvIndex::Apply(WorkerId worker, const KvEvent& event) {
  if (static_cast<uint8_t>(event.type) > static_cast<uint8_t>(KvEvent::Type::kCleared)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv event ", event.event_id, " of worker ", worker, ": unknown type ",
        static_cast<int>(event.type), ", expected stored(0), removed(1) or cleared(2)"));
  }
  auto slot = SlotFor(worker);
  if (!slot.ok()) return slot.status();
  return ApplyToSlot(*slot, event);
}

absl::Status KvIndex::ApplySnapshot(WorkerId worker, const KvSnapshot& snapshot) {
  auto slot_or = SlotFor(worker);
  if (!slot_or.ok()) return slot_or.status();
  const int slot = *slot_or;
  WorkerState& state = slots_[slot];
  if (snapshot.epoch < state.epoch) {
    return absl::FailedPreconditionError(
        absl::StrCat("kv snapshot of worker ", worker, " is from epoch ", snapshot.epoch,
                     " but epoch ", state.epoch, " was already seen; fetch a fresh snapshot"));
  }
  if (snapshot.epoch > state.epoch && (state.epoch != 0 || state.block_count != 0)) {
    ++stats_.epoch_changes;
  }
  ClearSlot(slot);
  for (BlockHash hash : snapshot.block_hashes) Store(slot, hash);
  std::deque<KvEvent> pending;
  pending.swap(state.buffered);
  state.epoch = snapshot.epoch;
  state.last_event_id = snapshot.event_id;
  state.needs_resync = false;
  ++stats_.snapshots_applied;
  // Replay what arrived while waiting; events the snapshot already covers count as
  // duplicates, and a hole between the snapshot and the buffer shows up as a new gap.
  for (const KvEvent& event : pending) {
    if (event.epoch == state.epoch && event.event_id <= state.last_event_id) continue;
    ApplyToSlot(slot, event);
  }
  return absl::OkStatus();
}

void KvIndex::RemoveWorker(WorkerId worker) {
  const int slot = FindSlot(worker);
  if (slot < 0) return;
  ClearSlot(slot);
  slots_[slot] = WorkerState{};
  slot_of_.erase(worker);
  live_mask_[slot / 64] &= ~(uint64_t{1} << (slot % 64));
}

void KvIndex::FindOverlap(std::span<const BlockHash> prompt_blocks, OverlapScores* out) const {
  out->Clear();
  if (prompt_blocks.empty() || blocks_.empty()) return;
  uint64_t active[kMaxWords];
  std::copy_n(live_mask_.data(), words_, active);
  static constexpr uint64_t kNone[kMaxWords] = {};
  const size_t n = prompt_blocks.size();
  // Lookups walk a table far larger than the caches; asking for the next few buckets early
  // overlaps their misses with the work on the current one.
  constexpr size_t kPrefetchDistance = 4;
  for (size_t i = 0; i < std::min(n, kPrefetchDistance); ++i) blocks_.prefetch(prompt_blocks[i]);
  for (size_t i = 0; i < n; ++i) {
    if (i + kPrefetchDistance < n) blocks_.prefetch(prompt_blocks[i + kPrefetchDistance]);
    auto it = blocks_.find(prompt_blocks[i]);
    const uint64_t* holders = it == blocks_.end() ? kNone : Bits(it->second);
    bool any = false;
    for (int w = 0; w < words_; ++w) {
      uint64_t dropped = active[w] & ~holders[w];
      active[w] &= holders[w];
      any |= active[w] != 0;
      if (i == 0) continue;  // workers lacking the first block hold no prefix at all
      while (dropped != 0) {
        const int bit = std::countr_zero(dropped);
        dropped &= dropped - 1;
        out->blocks.emplace_back(slots_[w * 64 + bit].id, static_cast<int32_t>(i));
      }
    }
    if (!any) return;
  }
  for (int w = 0; w < words_; ++w) {
    for (uint64_t rest = active[w]; rest != 0; rest &= rest - 1) {
      out->blocks.emplace_back(slots_[w * 64 + std::countr_zero(rest)].id, static_cast<int32_t>(n));
    }
  }
}

std::vector<ResyncRequest> KvIndex::PendingResyncs() const {
  std::vector<ResyncRequest> requests;
  for (const WorkerState& state : slots_) {
    if (state.in_use && state.needs_resync) {
      requests.push_back({state.id, state.epoch, state.last_event_id});
    }
  }
  return requests;
}

bool KvIndex::NeedsResync(WorkerId worker) const {
  const int slot = FindSlot(worker);
  return slot >= 0 && slots_[slot].needs_resync;
}

std::optional<KvIndex::Cursor> KvIndex::CursorOf(WorkerId worker) const {
  const int slot = FindSlot(worker);
  if (slot < 0) return std::nullopt;
  const WorkerState& state = slots_[slot];
  return Cursor{state.epoch, state.last_event_id, state.needs_resync, state.buffered.size()};
}

bool KvIndex::Holds(WorkerId worker, BlockHash hash) const {
  const int slot = FindSlot(worker);
  if (slot < 0) return false;
  auto it = blocks_.find(hash);
  return it != blocks_.end() && (Bits(it->second)[slot / 64] >> (slot % 64) & 1) != 0;
}

int64_t KvIndex::BlockCount(WorkerId worker) const {
  const int slot = FindSlot(worker);
  return slot < 0 ? 0 : slots_[slot].block_count;
}

std::vector<BlockHash> KvIndex::BlocksOf(WorkerId worker) const {
  std::vector<BlockHash> hashes;
  const int slot = FindSlot(worker);
  if (slot < 0) return hashes;
  for (const auto& [hash, value] : blocks_) {
    if ((Bits(value)[slot / 64] >> (slot % 64) & 1) != 0) hashes.push_back(hash);
  }
  return hashes;
}

}  // namespace tandem::router
