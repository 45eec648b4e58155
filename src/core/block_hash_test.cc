#include "core/block_hash.h"

#include <cstring>
#include <numeric>
#include <vector>

#include "gtest/gtest.h"
#include "xxhash.h"

namespace tandem {
namespace {

// The definition written out byte by byte: le64(parent) ++ le32(token)...
BlockHash ReferenceHash(uint64_t parent, const std::vector<int32_t>& tokens) {
  std::vector<unsigned char> bytes;
  for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<unsigned char>(parent >> (8 * i)));
  for (int32_t token : tokens) {
    const auto value = static_cast<uint32_t>(token);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<unsigned char>(value >> (8 * i)));
  }
  return XXH3_64bits(bytes.data(), bytes.size());
}

std::vector<int32_t> Iota(int n, int32_t start) {
  std::vector<int32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), start);
  return tokens;
}

TEST(BlockHashTest, MatchesTheWrittenDefinition) {
  const std::vector<int32_t> tokens = {1, 2, 3, -4};
  EXPECT_EQ(HashBlock(kRootBlockHash, tokens), ReferenceHash(0, tokens));
  EXPECT_EQ(HashBlock(0x0123456789abcdefULL, tokens), ReferenceHash(0x0123456789abcdefULL, tokens));
}

TEST(BlockHashTest, LongBlocksStreamToTheSameHash) {
  const std::vector<int32_t> tokens = Iota(2000, 7);  // beyond the stack buffer
  EXPECT_EQ(HashBlock(99, tokens), ReferenceHash(99, tokens));
}

TEST(BlockHashTest, ChainsFullBlocksAndIgnoresTheTail) {
  const std::vector<int32_t> tokens = Iota(16 * 3 + 5, 100);
  const std::vector<BlockHash> hashes = HashPromptBlocks(tokens, 16);
  ASSERT_EQ(hashes.size(), 3u);
  BlockHash parent = kRootBlockHash;
  for (size_t i = 0; i < 3; ++i) {
    std::vector<int32_t> block(tokens.begin() + 16 * i, tokens.begin() + 16 * (i + 1));
    parent = ReferenceHash(parent, block);
    EXPECT_EQ(hashes[i], parent) << "block " << i;
  }
}

TEST(BlockHashTest, SharedPrefixesShareHashesAndNothingAfter) {
  std::vector<int32_t> a = Iota(64, 0);
  std::vector<int32_t> b = a;
  b[40] = 12345;  // differs in block 2 (tokens 32..47)
  const auto ha = HashPromptBlocks(a, 16);
  const auto hb = HashPromptBlocks(b, 16);
  ASSERT_EQ(ha.size(), 4u);
  EXPECT_EQ(ha[0], hb[0]);
  EXPECT_EQ(ha[1], hb[1]);
  EXPECT_NE(ha[2], hb[2]);
  EXPECT_NE(ha[3], hb[3]);  // same tokens, different prefix
}

TEST(BlockHashTest, SameTokensAtDifferentPositionsHashDifferently) {
  std::vector<int32_t> repeated(32, 5);
  const auto hashes = HashPromptBlocks(repeated, 16);
  ASSERT_EQ(hashes.size(), 2u);
  EXPECT_NE(hashes[0], hashes[1]);
}

TEST(BlockHashTest, NonPositiveBlockSizeOrShortPromptGivesNoHashes) {
  const std::vector<int32_t> tokens = Iota(40, 0);
  EXPECT_TRUE(HashPromptBlocks(tokens, 0).empty());
  EXPECT_TRUE(HashPromptBlocks(tokens, -16).empty());
  EXPECT_TRUE(HashPromptBlocks(std::vector<int32_t>(15, 1), 16).empty());
}

}  // namespace
}  // namespace tandem
