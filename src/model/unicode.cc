#include "model/unicode.h"

#include <algorithm>
#include <array>

namespace tandem::model {
namespace {

// Classes of the first 256 code points, looked up without a search: most text is ASCII.
struct Latin1Table {
  std::array<uint8_t, 256> cls{};
  Latin1Table() {
    for (int i = 0; i < internal::kUnicodeRangeCount; ++i) {
      const auto& r = internal::kUnicodeRanges[i];
      if (r.first > 255) break;
      for (uint32_t c = r.first; c <= std::min<uint32_t>(r.last, 255); ++c) cls[c] = r.cls;
    }
  }
};
const Latin1Table& Latin1() {
  static const Latin1Table table;
  return table;
}

struct ByteTables {
  std::array<uint32_t, 256> byte_to_unicode{};
  std::array<int16_t, 324> unicode_to_byte{};  // byte images lie below 256 + 68
  ByteTables() {
    unicode_to_byte.fill(-1);
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      byte_to_unicode[b] = printable ? b : 256 + n++;
      unicode_to_byte[byte_to_unicode[b]] = static_cast<int16_t>(b);
    }
  }
};
const ByteTables& Bytes() {
  static const ByteTables tables;
  return tables;
}

}  // namespace

uint8_t CodePointClass(uint32_t code_point) {
  if (code_point < 256) return Latin1().cls[code_point];
  if (code_point > 0x10FFFF) return 0;
  const auto* begin = internal::kUnicodeRanges;
  const auto* end = begin + internal::kUnicodeRangeCount;
  const auto* it =
      std::upper_bound(begin, end, code_point,
                       [](uint32_t cp, const internal::UnicodeRange& r) { return cp < r.first; });
  if (it == begin) return 0;
  --it;
  return code_point <= it->last ? it->cls : 0;
}

const char* UnicodeTableVersion() { return internal::kUnicodeVersion; }

uint32_t DecodeUtf8(std::string_view text, size_t pos, size_t* length) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const unsigned char c = s[pos];
  *length = 1;
  if (c < 0x80) return c;
  int need;
  uint32_t cp;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    cp = c & 0x07;
  } else {
    return kInvalidCodePoint | c;
  }
  if (pos + need >= n) return kInvalidCodePoint | c;
  for (int i = 1; i <= need; ++i) {
    const unsigned char d = s[pos + i];
    if ((d & 0xC0) != 0x80) return kInvalidCodePoint | c;
    cp = (cp << 6) | (d & 0x3F);
  }
  // Reject overlong forms, surrogates and values past U+10FFFF.
  if ((need == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
      (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))) {
    return kInvalidCodePoint | c;
  }
  *length = need + 1;
  return cp;
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

size_t CompleteUtf8PrefixLength(std::string_view bytes) {
  const size_t n = bytes.size();
  // An incomplete character is at most 3 bytes long: look back for its lead byte.
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(bytes[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: keep looking for the lead
    int need = 0;
    if (c >= 0xC2 && c <= 0xDF)
      need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
      need = 2;
    else if (c >= 0xF0 && c <= 0xF4)
      need = 3;
    if (need >= static_cast<int>(back)) {
      // Still waiting for continuation bytes, provided those seen so far can continue it.
      size_t len = 0;
      std::string padded(bytes.substr(n - back));
      while (static_cast<int>(padded.size()) < need + 1) padded.push_back('\x80');
      // A prefix that can never become valid (e.g. ED A0 = surrogate) is complete as is;
      // try the smallest and the largest continuation to see whether some completion decodes.
      std::string padded_high(bytes.substr(n - back));
      while (static_cast<int>(padded_high.size()) < need + 1) padded_high.push_back('\xBF');
      const bool low_ok = !(DecodeUtf8(padded, 0, &len) & kInvalidCodePoint);
      const bool high_ok = !(DecodeUtf8(padded_high, 0, &len) & kInvalidCodePoint);
      if (low_ok || high_ok) return n - back;
    }
    return n;
  }
  return n;
}

uint32_t ByteToUnicode(uint8_t byte) { return Bytes().byte_to_unicode[byte]; }

int UnicodeToByte(uint32_t code_point) {
  if (code_point >= Bytes().unicode_to_byte.size()) return -1;
  return Bytes().unicode_to_byte[code_point];
}

namespace {

// The text as code points with their classes, so the matchers below can look ahead freely.
struct CharView {
  std::vector<uint32_t> cps;
  std::vector<uint8_t> cls;
  std::vector<size_t> offsets;  // byte offset of each character, plus one past the end
};

void Decompose(std::string_view text, CharView* v) {
  v->cps.clear();
  v->cls.clear();
  v->offsets.clear();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    const uint32_t cp = DecodeUtf8(text, pos, &len);
    v->cps.push_back(cp);
    v->cls.push_back((cp & kInvalidCodePoint) ? 0 : CodePointClass(cp));
    v->offsets.push_back(pos);
    pos += len;
  }
  v->offsets.push_back(text.size());
}

// Length (in characters) of a contraction at i, 0 if none. `fold` allows upper case letters.
size_t MatchContraction(const CharView& v, size_t i, bool fold) {
  const size_t n = v.cps.size();
  if (v.cps[i] != '\'' || i + 1 >= n) return 0;
  auto lower = [&](size_t k) -> uint32_t {
    const uint32_t c = v.cps[k];
    return (fold && c >= 'A' && c <= 'Z') ? c + 32 : c;
  };
  const uint32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 < n) {
    const uint32_t b = lower(i + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  }
  return 0;
}

bool IsLetter(const CharView& v, size_t i) { return v.cls[i] & kUnicodeLetter; }
bool IsNumber(const CharView& v, size_t i) { return v.cls[i] & kUnicodeNumber; }
bool IsSpace(const CharView& v, size_t i) { return v.cls[i] & kUnicodeWhitespace; }
bool IsOther(const CharView& v, size_t i) {
  return !(v.cls[i] & (kUnicodeLetter | kUnicodeNumber | kUnicodeWhitespace));
}
bool IsNewline(const CharView& v, size_t i) { return v.cps[i] == '\r' || v.cps[i] == '\n'; }

// \s+(?!\S)|\s+ at i (i is white space): the run, minus its last character when a non-space
// follows and the run is longer than one.
size_t MatchTrailingSpace(const CharView& v, size_t i) {
  const size_t n = v.cps.size();
  size_t j = i;
  while (j < n && IsSpace(v, j)) ++j;
  if (j < n && j - i > 1) return j - 1 - i;
  return j - i;
}

size_t MatchGpt2(const CharView& v, size_t i) {
  const size_t n = v.cps.size();
  if (size_t c = MatchContraction(v, i, /*fold=*/false)) return c;
  size_t start = (v.cps[i] == ' ' && i + 1 < n) ? i + 1 : i;
  for (int pass = 0; pass < 2; ++pass) {
    // pass 0 tries with the optional leading space, pass 1 without it.
    if (pass == 1) {
      if (start == i) break;
      start = i;
    }
    size_t j = start;
    if (IsLetter(v, j)) {
      while (j < n && IsLetter(v, j)) ++j;
      return j - i;
    }
    if (IsNumber(v, j)) {
      while (j < n && IsNumber(v, j)) ++j;
      return j - i;
    }
    if (IsOther(v, j)) {
      while (j < n && IsOther(v, j)) ++j;
      return j - i;
    }
  }
  return MatchTrailingSpace(v, i);
}

size_t MatchLlama3(const CharView& v, size_t i, int max_digits) {
  const size_t n = v.cps.size();
  if (size_t c = MatchContraction(v, i, /*fold=*/true)) return c;
  // [^\r\n\p{L}\p{N}]?\p{L}+
  {
    size_t j = i;
    if (!IsLetter(v, j) && !IsNumber(v, j) && !IsNewline(v, j) && j + 1 < n && IsLetter(v, j + 1)) {
      ++j;
    }
    if (IsLetter(v, j)) {
      while (j < n && IsLetter(v, j)) ++j;
      return j - i;
    }
  }
  // \p{N}{1,max}
  if (IsNumber(v, i)) {
    size_t j = i;
    while (j < n && IsNumber(v, j) && static_cast<int>(j - i) < max_digits) ++j;
    return j - i;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  {
    size_t j = (v.cps[i] == ' ' && i + 1 < n && IsOther(v, i + 1)) ? i + 1 : i;
    if (IsOther(v, j)) {
      while (j < n && IsOther(v, j)) ++j;
      while (j < n && IsNewline(v, j)) ++j;
      return j - i;
    }
  }
  // \s*[\r\n]+ : the white space run up to and including its last line break.
  size_t j = i;
  size_t last_newline_end = 0;
  while (j < n && IsSpace(v, j)) {
    if (IsNewline(v, j)) last_newline_end = j + 1;
    ++j;
  }
  if (last_newline_end) return last_newline_end - i;
  return MatchTrailingSpace(v, i);
}

}  // namespace

void PreTokenize(PreTokenizer kind, std::string_view text, std::vector<std::string_view>* pieces) {
  thread_local CharView v;
  Decompose(text, &v);
  const size_t n = v.cps.size();
  size_t i = 0;
  while (i < n) {
    size_t len;
    switch (kind) {
      case PreTokenizer::kGpt2:
        len = MatchGpt2(v, i);
        break;
      case PreTokenizer::kLlama3:
        len = MatchLlama3(v, i, 3);
        break;
      case PreTokenizer::kQwen2:
      default:
        len = MatchLlama3(v, i, 1);
        break;
    }
    if (len == 0) len = 1;  // unreachable by construction; never loop forever
    pieces->push_back(text.substr(v.offsets[i], v.offsets[i + len] - v.offsets[i]));
    i += len;
  }
}

}  // namespace tandem::model
