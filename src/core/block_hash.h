// Block hashing of token sequences: the identity of a KV cache block, shared by the engine's
// prefix cache (which publishes these hashes in its KV events) and the router's KV index
// (which hashes incoming prompts the same way to find the workers that hold their prefix).
//
// A prompt is cut into full blocks of `block_size` tokens; a trailing partial block has no hash
// (it is never shared). Block i's hash chains over every token before it:
//
//   hash[0] = XXH3_64( le64(kRootBlockHash) ++ le32(tokens[0 .. B)) )
//   hash[i] = XXH3_64( le64(hash[i-1])       ++ le32(tokens[i*B .. (i+1)*B)) )
//
// where le64/le32 are little-endian encodings of the parent hash and of each token id (int32),
// concatenated without padding. Two blocks have the same hash only if they hold the same tokens
// after the same prefix, so "worker W holds hash[i]" means W has the first i+1 blocks' KV for
// this exact prompt prefix (up to a 2^-64 collision chance).
//
//   std::vector<BlockHash> hashes = HashPromptBlocks(prompt_token_ids, /*block_size=*/16);
//
// Thread-safety: stateless, safe from any thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tandem {

using BlockHash = uint64_t;

// The parent hash of a sequence's first block.
inline constexpr BlockHash kRootBlockHash = 0;

// The hash of one block holding `tokens` whose preceding block hashed to `parent`.
BlockHash HashBlock(BlockHash parent, std::span<const int32_t> tokens);

// Appends the chained hashes of every full block of `tokens` to `out` (which is cleared first).
// `block_size` must be positive; a non-positive size yields no hashes.
void HashPromptBlocks(std::span<const int32_t> tokens, int block_size, std::vector<BlockHash>* out);
std::vector<BlockHash> HashPromptBlocks(std::span<const int32_t> tokens, int block_size);

}  // namespace tandem
