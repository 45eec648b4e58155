#include "core/block_hash.h"

#include <bit>
#include <cstring>

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include "xxhash.h"

namespace tandem {

static_assert(std::endian::native == std::endian::little,
              "block hashes are defined over little-endian bytes; add byte swapping to port");

namespace {

// Blocks up to this many tokens are hashed from a stack buffer; longer ones stream.
constexpr size_t kStackTokens = 512;

}  // namespace

BlockHash HashBlock(BlockHash parent, std::span<const int32_t> tokens) {
  const size_t token_bytes = tokens.size() * sizeof(int32_t);
  if (tokens.size() <= kStackTokens) {
    unsigned char buffer[sizeof(BlockHash) + kStackTokens * sizeof(int32_t)];
    std::memcpy(buffer, &parent, sizeof(parent));
    if (token_bytes > 0) std::memcpy(buffer + sizeof(parent), tokens.data(), token_bytes);
    return XXH3_64bits(buffer, sizeof(parent) + token_bytes);
  }
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, &parent, sizeof(parent));
  XXH3_64bits_update(&state, tokens.data(), token_bytes);
  return XXH3_64bits_digest(&state);
}

void HashPromptBlocks(std::span<const int32_t> tokens, int block_size,
                      std::vector<BlockHash>* out) {
  out->clear();
  if (block_size <= 0) return;
  const size_t size = static_cast<size_t>(block_size);
  const size_t blocks = tokens.size() / size;
  out->reserve(blocks);
  BlockHash parent = kRootBlockHash;
  for (size_t i = 0; i < blocks; ++i) {
    parent = HashBlock(parent, tokens.subspan(i * size, size));
    out->push_back(parent);
  }
}

std::vector<BlockHash> HashPromptBlocks(std::span<const int32_t> tokens, int block_size) {
  std::vector<BlockHash> hashes;
  HashPromptBlocks(tokens, block_size, &hashes);
  return hashes;
}

}  // namespace tandem
