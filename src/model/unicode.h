// UTF-8 and Unicode helpers for the tokenizers: decoding code points, code point classes
// (letter / number / white space / mark, from a generated table), the GPT-2 byte-to-unicode
// mapping, and the pre-tokenizer splits of GPT-2, Llama-3 and Qwen2.
//
//   std::vector<std::string_view> pieces;
//   PreTokenize(PreTokenizer::kLlama3, "Hello world!", &pieces);  // "Hello", " world", "!"
//
// Thread-safety: stateless functions over constant tables.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace tandem::model {

// Bits of a code point's class.
enum : uint8_t {
  kUnicodeLetter = 1,      // general category L*
  kUnicodeNumber = 2,      // general category N*
  kUnicodeWhitespace = 4,  // White_Space property (what `\s` matches in the tokenizers' regexes)
  kUnicodeMark = 8,        // general category M*
};

uint8_t CodePointClass(uint32_t code_point);
// The Unicode version the class table was generated from.
const char* UnicodeTableVersion();

// Decodes the UTF-8 character starting at `text[pos]`, storing its length in `*length`. A byte
// that does not start a valid, complete, shortest-form character decodes as itself with length
// 1 and the result has kInvalidCodePoint set, so callers still see every byte.
inline constexpr uint32_t kInvalidCodePoint = 0x80000000u;
uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* length);
void AppendUtf8(uint32_t code_point, std::string* out);

// The length of the longest prefix of `bytes` that does not end inside an incomplete UTF-8
// character (one whose remaining bytes may still arrive). Invalid bytes count as complete.
size_t CompleteUtf8PrefixLength(std::string_view bytes);

// GPT-2's reversible mapping of bytes to printable code points, used by byte-level BPE vocabs.
uint32_t ByteToUnicode(uint8_t byte);
// The inverse: -1 for a code point that is not the image of a byte.
int UnicodeToByte(uint32_t code_point);

// The split patterns of the byte-level BPE pre-tokenizers, implemented by hand:
//   kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   kLlama3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   kQwen2:  as kLlama3 but \p{N} (one digit per piece) instead of \p{N}{1,3}
enum class PreTokenizer { kGpt2, kLlama3, kQwen2 };
// Appends the pieces of `text` to `pieces`; they are contiguous and cover all of `text`.
void PreTokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>* pieces);

namespace internal {
// One run of code points sharing a class; the generated table (unicode_tables.cc) is sorted.
struct UnicodeRange {
  uint32_t first;
  uint32_t last;
  uint8_t cls;
};
extern const UnicodeRange kUnicodeRanges[];
extern const int kUnicodeRangeCount;
extern const char kUnicodeVersion[];
}  // namespace internal

}  // namespace tandem::model
