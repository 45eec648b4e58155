// The element type of cached keys and values (docs/kv-layout.md), shared by the engine's KV pool,
// the KV transfer protocol (which states it in its Begin frame) and the worker.
//
//   std::optional<KvType> type = ParseKvType("bf16");  // KvType::kBF16
//   int64_t bytes = KvTypeBytes(*type);                 // 2
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace tandem {

// The values are the KV protocol's wire codes (0 there means "not stated").
enum class KvType : uint8_t { kF32 = 1, kBF16 = 2 };

inline int64_t KvTypeBytes(KvType type) { return type == KvType::kBF16 ? 2 : 4; }

inline std::string_view KvTypeName(KvType type) { return type == KvType::kBF16 ? "bf16" : "f32"; }

// "f32" or "bf16"; nullopt for anything else.
inline std::optional<KvType> ParseKvType(std::string_view name) {
  if (name == "f32") return KvType::kF32;
  if (name == "bf16") return KvType::kBF16;
  return std::nullopt;
}

}  // namespace tandem
