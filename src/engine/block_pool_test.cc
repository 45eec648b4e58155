#include "engine/block_pool.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "xxhash.h"

namespace tandem::engine {
namespace {

KvLayout SmallLayout() {
  return {.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = 4};
}

std::unique_ptr<BlockPool> MakePool(int blocks, bool prefix_cache = true) {
  auto pool = BlockPool::Create({.layout = SmallLayout(),
                                 .budget_bytes = blocks * SmallLayout().block_bytes(),
                                 .enable_prefix_cache = prefix_cache});
  EXPECT_TRUE(pool.ok()) << pool.status();
  return std::move(pool).value();
}

TEST(BlockHashTest, MatchesTheDocumentedDefinition) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  // XXH3_64(le64(parent) ++ le32(tokens)), computed by hand here.
  unsigned char bytes[8 + 16];
  uint64_t parent = kRootBlockHash;
  std::memcpy(bytes, &parent, 8);
  std::memcpy(bytes + 8, tokens.data(), 16);
  const uint64_t first = XXH3_64bits(bytes, sizeof(bytes));
  std::memcpy(bytes, &first, 8);
  std::memcpy(bytes + 8, tokens.data() + 4, 16);
  const uint64_t second = XXH3_64bits(bytes, sizeof(bytes));
  EXPECT_EQ(HashKvBlocks(tokens, 4), (std::vector<BlockHash>{first, second}));
  EXPECT_TRUE(HashKvBlocks(tokens, 0).empty());
}

TEST(BlockHashTest, VerifyHashChainFindsTheWrongBlock) {
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<BlockHash> hashes = HashKvBlocks(tokens, 4);
  EXPECT_TRUE(VerifyHashChain(tokens, 4, hashes).ok());
  hashes[1] ^= 1;
  absl::Status status = VerifyHashChain(tokens, 4, hashes);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(status.message().find("block 1"), std::string::npos) << status;
}

TEST(BlockPoolTest, BudgetDecidesBlockCount) {
  auto pool = BlockPool::Create({.layout = SmallLayout(), .budget_bytes = 10 * 512 + 100});
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ(SmallLayout().block_bytes(), 512);
  EXPECT_EQ((*pool)->num_blocks(), 10);
  auto too_small = BlockPool::Create({.layout = SmallLayout(), .budget_bytes = 100});
  EXPECT_EQ(too_small.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_small.status().message().find("holds no block"), std::string::npos);
  EXPECT_FALSE(BlockPool::Create({.layout = SmallLayout()}).ok());
  auto by_fraction = BlockPool::Create({.layout = SmallLayout(), .budget_fraction = 1e-6});
  EXPECT_TRUE(by_fraction.ok()) << by_fraction.status();
}

// Pages of [first, first + bytes) resident in this process.
int64_t ResidentPages(const uint8_t* first, int64_t bytes) {
  const int64_t page = sysconf(_SC_PAGESIZE);
  const auto begin = reinterpret_cast<uintptr_t>(first) / page * page;
  const int64_t pages = (reinterpret_cast<uintptr_t>(first) + bytes - begin + page - 1) / page;
  std::vector<unsigned char> resident(pages);
  EXPECT_EQ(mincore(reinterpret_cast<void*>(begin), pages * page, resident.data()), 0);
  int64_t count = 0;
  for (unsigned char r : resident) count += r & 1;
  return count;
}

// The pool's storage is resident once created (no first-use page faults while serving); with
// prefault off it is not written (whether its pages happen to be resident then depends on the
// allocator); caller-provided memory is never written.
TEST(BlockPoolTest, PrefaultMakesTheWholeBudgetResident) {
  const int64_t page = sysconf(_SC_PAGESIZE);
  auto pool = BlockPool::Create({.layout = SmallLayout(), .budget_bytes = 16 << 20});
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_GE(ResidentPages((*pool)->Keys(0, 0, 0), (*pool)->storage_bytes()),
            (*pool)->storage_bytes() / page);
  auto lazy =
      BlockPool::Create({.layout = SmallLayout(), .budget_bytes = 16 << 20, .prefault = false});
  ASSERT_TRUE(lazy.ok()) << lazy.status();
  std::vector<uint8_t> memory(64 * 512, 0xab);
  auto caller = BlockPool::Create(
      {.layout = SmallLayout(), .memory = memory.data(), .memory_bytes = 64 * 512});
  ASSERT_TRUE(caller.ok()) << caller.status();
  EXPECT_EQ(memory[100], 0xab);
}

TEST(BlockPoolTest, AllocateReleaseAndExhaustion) {
  auto pool = MakePool(4);
  auto blocks = pool->Allocate(3);
  ASSERT_TRUE(blocks.ok());
  EXPECT_EQ(pool->AvailableBlocks(), 1);
  EXPECT_EQ(pool->Allocate(2).status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(pool->AvailableBlocks(), 1);  // a failed allocation takes nothing
  pool->Retain((*blocks)[0]);
  EXPECT_EQ(pool->RefCount((*blocks)[0]), 2);
  pool->Release(*blocks);
  EXPECT_EQ(pool->AvailableBlocks(), 3);
  pool->Release((*blocks)[0]);
  EXPECT_EQ(pool->AvailableBlocks(), 4);
}

TEST(BlockPoolTest, LayoutSpansAreDisjointAndContiguous) {
  auto pool = MakePool(3);
  const KvLayout& layout = pool->layout();
  EXPECT_EQ(pool->BlockSpan(1).data(), pool->BlockData(0) + layout.block_bytes());
  EXPECT_EQ(pool->LayerSpan(1, 1).data(), pool->BlockData(1) + layout.layer_block_bytes());
  EXPECT_EQ(pool->Values(1, 1, 0),
            pool->LayerSpan(1, 1).data() + layout.num_kv_heads * layout.head_block_bytes());
  EXPECT_EQ(pool->Values(1, 1, 1) + layout.head_block_bytes(),
            pool->LayerSpan(1, 1).data() + pool->LayerSpan(1, 1).size());
  EXPECT_EQ(reinterpret_cast<uint8_t*>(pool->KeysF32(1, 1, 1)), pool->Keys(1, 1, 1));
}

// BF16 keeps the block layout with 2-byte elements: every size and offset halves, so the same
// budget holds twice the blocks.
TEST(BlockPoolTest, Bf16LayoutHalvesEverySize) {
  KvLayout layout = SmallLayout();
  layout.type = KvType::kBF16;
  EXPECT_EQ(layout.element_bytes(), 2);
  EXPECT_EQ(layout.head_block_bytes(), 4 * 4 * 2);
  EXPECT_EQ(layout.layer_block_bytes(), 2 * 2 * 32);
  EXPECT_EQ(layout.block_bytes(), 256);
  EXPECT_EQ(layout.token_bytes(), 64);
  EXPECT_EQ(layout.block_bytes() * 2, SmallLayout().block_bytes());

  auto pool = BlockPool::Create({.layout = layout, .budget_bytes = 10 * 512 + 100});
  ASSERT_TRUE(pool.ok()) << pool.status();
  BlockPool& p = **pool;
  EXPECT_EQ(p.num_blocks(), 20);
  EXPECT_EQ(p.storage_bytes(), 20 * 256);
  EXPECT_EQ(p.BlockSpan(3).data(), p.BlockData(0) + 3 * 256);
  EXPECT_EQ(p.BlockSpan(3).size(), 256u);
  EXPECT_EQ(p.LayerSpan(3, 1).data(), p.BlockData(3) + 128);
  EXPECT_EQ(p.LayerSpan(3, 1).size(), 128u);
  EXPECT_EQ(p.Keys(3, 1, 1), p.LayerSpan(3, 1).data() + 32);
  EXPECT_EQ(p.Values(3, 1, 0), p.LayerSpan(3, 1).data() + 64);
  EXPECT_EQ(p.Values(3, 1, 1) + 32, p.LayerSpan(3, 1).data() + p.LayerSpan(3, 1).size());
  EXPECT_EQ(reinterpret_cast<uint8_t*>(p.KeysBf16(3, 1, 1)), p.Keys(3, 1, 1));
  EXPECT_EQ(reinterpret_cast<uint8_t*>(p.ValuesBf16(3, 1, 1)), p.Values(3, 1, 1));
}

TEST(BlockPoolTest, ExternalMemoryHoldsTheBlocks) {
  std::vector<uint8_t> region(5 * 512 + 17);
  auto pool = BlockPool::Create(
      {.layout = SmallLayout(), .memory = region.data(), .memory_bytes = (int64_t)region.size()});
  ASSERT_TRUE(pool.ok());
  EXPECT_EQ((*pool)->num_blocks(), 5);
  EXPECT_EQ((*pool)->BlockData(0), region.data());
}

TEST(BlockPoolTest, PrefixCacheReusesCommittedBlocksAndEvictsLru) {
  auto pool = MakePool(4);
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  const std::vector<BlockHash> hashes = HashKvBlocks(prompt, 4);
  auto blocks = pool->Allocate(3);
  ASSERT_TRUE(blocks.ok());
  pool->CommitChain(std::span(*blocks).first(2), kRootBlockHash, hashes);
  pool->Release(*blocks);
  // Two cached (evictable) blocks, two free ones.
  BlockPoolStats stats = pool->Stats();
  EXPECT_EQ(stats.cached_blocks, 2);
  EXPECT_EQ(stats.free_blocks, 2);
  EXPECT_EQ(pool->MatchPrefix(hashes), 2);

  std::vector<BlockId> hit = pool->AcquirePrefix(hashes);
  EXPECT_EQ(hit, (std::vector<BlockId>{(*blocks)[0], (*blocks)[1]}));
  pool->Release(hit);

  // Allocating everything evicts the cached blocks, the sequence's tail block first.
  auto all = pool->Allocate(3);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(pool->MatchPrefix(hashes), 1);  // the tail (block 1) went first
  std::vector<KvEvent> events;
  ASSERT_TRUE(pool->EventsAfter(0, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, KvEvent::Type::kStored);
  EXPECT_EQ(events[0].event_id, 1u);
  EXPECT_EQ(events[0].block_hashes, hashes);
  EXPECT_EQ(events[1].type, KvEvent::Type::kRemoved);
  EXPECT_EQ(events[1].event_id, 2u);
  EXPECT_EQ(events[1].block_hashes, std::vector<BlockHash>{hashes[1]});
  EXPECT_EQ(pool->Stats().evictions, 1);
}

TEST(BlockPoolTest, DuplicateCommitKeepsOneOwnerAndSplitsTheEvent) {
  auto pool = MakePool(4);
  const std::vector<BlockHash> hashes = HashKvBlocks(std::vector<int32_t>(12, 7), 4);
  auto first = pool->Allocate(1);
  pool->Commit((*first)[0], kRootBlockHash, hashes[0]);
  auto second = pool->Allocate(3);
  pool->CommitChain(*second, kRootBlockHash, hashes);
  std::vector<KvEvent> events;
  ASSERT_TRUE(pool->EventsAfter(1, &events).ok());
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].parent_hash, hashes[0]);
  EXPECT_EQ(events[0].block_hashes, (std::vector<BlockHash>{hashes[1], hashes[2]}));
  pool->Release(*second);
  // The uncommitted duplicate went to the free list, the committed ones are cached.
  EXPECT_EQ(pool->Stats().cached_blocks, 2);
}

TEST(BlockPoolTest, ClearSnapshotAndEventHistory) {
  auto pool =
      BlockPool::Create({.layout = SmallLayout(), .budget_bytes = 8 * 512, .event_history = 2});
  ASSERT_TRUE(pool.ok());
  auto& p = **pool;
  auto blocks = p.Allocate(3);
  for (int i = 0; i < 3; ++i) p.Commit((*blocks)[i], i, 100 + i);
  KvSnapshot snapshot = p.Snapshot();
  EXPECT_EQ(snapshot.event_id, 3u);
  EXPECT_EQ(snapshot.block_hashes, (std::vector<BlockHash>{100, 101, 102}));
  std::vector<KvEvent> events;
  EXPECT_EQ(p.EventsAfter(0, &events).code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(p.EventsAfter(1, &events).ok());
  EXPECT_EQ(events.size(), 2u);
  EXPECT_TRUE(p.EventsAfter(3, &events).ok());
  EXPECT_TRUE(events.empty());
  p.ClearCache();
  EXPECT_EQ(p.last_event_id(), 4u);
  ASSERT_TRUE(p.EventsAfter(3, &events).ok());
  EXPECT_EQ(events[0].type, KvEvent::Type::kCleared);
  EXPECT_TRUE(p.Snapshot().block_hashes.empty());
  p.Release(*blocks);
  EXPECT_EQ(p.Stats().free_blocks, 8);
}

TEST(BlockPoolTest, PrefixCacheOffNeverMatches) {
  auto pool = MakePool(2, /*prefix_cache=*/false);
  auto blocks = pool->Allocate(1);
  pool->Commit((*blocks)[0], kRootBlockHash, 5);
  EXPECT_EQ(pool->MatchPrefix(std::vector<BlockHash>{5}), 0);
  EXPECT_EQ(pool->last_event_id(), 0u);
}

}  // namespace
}  // namespace tandem::engine
