// The router names the KV block hash of core/block_hash.h (shared with the engine's prefix
// cache, whose KV events carry these hashes) in its own namespace.
#pragma once

#include "core/block_hash.h"

namespace tandem::router {

using ::tandem::BlockHash;
using ::tandem::HashBlock;
using ::tandem::HashPromptBlocks;
inline constexpr BlockHash kRootParentHash = ::tandem::kRootBlockHash;

}  // namespace tandem::router
