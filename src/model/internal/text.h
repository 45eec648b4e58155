// Text helpers and constants shared by the model component's readers and tokenizers: the
// pre-tokenizer split patterns of the supported model families, SentencePiece's space mark, the
// BPE merge-pair key, and printable excerpts of untrusted names for error messages. Not for use
// outside src/model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"

namespace tandem::model::internal {

// Pre-tokenizer split patterns as Hugging Face tokenizer.json files spell them.
inline constexpr char kGpt2Regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
inline constexpr char kLlama3Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
inline constexpr char kQwen2Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

// U+2581, SentencePiece's space.
inline constexpr char kSpaceMark[] = "\xe2\x96\x81";

// One key for the merge pair (a, b).
inline uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

// The first `max` bytes of an untrusted name, C-escaped, with "..." when cut.
inline std::string Printable(absl::string_view text, size_t max = 60) {
  std::string out = absl::CHexEscape(text.substr(0, max));
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace tandem::model::internal
