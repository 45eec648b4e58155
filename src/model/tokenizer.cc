#include "model/tokenizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "model/internal/text.h"

namespace tandem::model {
namespace {

using internal::kSpaceMark;
using internal::PairKey;

// GGUF token types.
constexpr int32_t kTypeNormal = 1;
constexpr int32_t kTypeUnknown = 2;
constexpr int32_t kTypeControl = 3;
constexpr int32_t kTypeUserDefined = 4;
constexpr int32_t kTypeUnused = 5;
constexpr int32_t kTypeByte = 6;

// "<0x41>" -> 0x41, or -1.
int ParseByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return -1;
    v = v * 16 + d;
  }
  return v;
}

// The bytes a byte-level token stands for, or nullopt when a character is not a byte image.
bool ByteLevelBytes(std::string_view text, std::string* out) {
  out->clear();
  size_t pos = 0;
  while (pos < text.size()) {
    size_t len;
    const uint32_t cp = DecodeUtf8(text, pos, &len);
    const int b = (cp & kInvalidCodePoint) ? -1 : UnicodeToByte(cp);
    if (b < 0) return false;
    out->push_back(static_cast<char>(b));
    pos += len;
  }
  return true;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromVocab(const VocabSpec& vocab) {
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  TANDEM_RETURN_IF_ERROR(t->Init(vocab));
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromHuggingFaceJson(
    std::string_view tokenizer_json, std::string_view tokenizer_config_json,
    std::string_view source) {
  TANDEM_ASSIGN_OR_RETURN(VocabSpec vocab,
                          VocabFromHuggingFaceJson(tokenizer_json, tokenizer_config_json, source));
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  TANDEM_RETURN_IF_ERROR(Annotate(t->Init(std::move(vocab)), source));
  return t;
}

absl::Status Tokenizer::Init(VocabSpec vocab) {
  vocab_ = std::move(vocab);
  const size_t n = vocab_.tokens.size();
  if (n == 0) return absl::InvalidArgumentError("tokenizer vocabulary is empty");
  if (n > (1u << 24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer vocabulary has ", n, " tokens; expected at most ", 1u << 24));
  }
  if (!vocab_.token_types.empty() && vocab_.token_types.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", n, " tokens but ",
                                                   vocab_.token_types.size(),
                                                   " token types; expected one per token"));
  }
  if (!vocab_.scores.empty() && vocab_.scores.size() != n) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", n, " tokens but ",
                                                   vocab_.scores.size(),
                                                   " scores; expected one per token"));
  }
  auto check_id = [&](int32_t id, const char* what) -> absl::Status {
    if (id < -1 || id >= static_cast<int32_t>(n)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer ", what, " id ", id, " is out of range: expected -1 or [0, ", n, ")"));
    }
    return absl::OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(check_id(vocab_.bos_id, "BOS"));
  TANDEM_RETURN_IF_ERROR(check_id(vocab_.eos_id, "EOS"));
  TANDEM_RETURN_IF_ERROR(check_id(vocab_.pad_id, "padding"));
  TANDEM_RETURN_IF_ERROR(check_id(vocab_.unk_id, "unknown-token"));
  for (int32_t id : vocab_.extra_eos_ids) TANDEM_RETURN_IF_ERROR(check_id(id, "end-of-turn"));
  if (vocab_.token_types.empty()) {
    vocab_.token_types.assign(n, kTypeNormal);
    if (vocab_.kind == VocabSpec::Kind::kSentencePiece) {
      for (size_t i = 0; i < n; ++i) {
        if (ParseByteToken(vocab_.tokens[i]) >= 0) vocab_.token_types[i] = kTypeByte;
      }
    }
  }

  const bool byte_level = vocab_.kind == VocabSpec::Kind::kByteLevelBpe;
  if (byte_level) {
    const std::string& pre = vocab_.pre_tokenizer;
    if (pre.empty() || pre == "gpt2" || pre == "default") {
      pre_tokenizer_ = PreTokenizer::kGpt2;
    } else if (pre == "llama-bpe" || pre == "llama3" || pre == "smaug-bpe") {
      pre_tokenizer_ = PreTokenizer::kLlama3;
      ignore_merges_ = true;  // as Llama-3's tokenizer.json says, and llama.cpp assumes
    } else if (pre == "qwen2" || pre == "qwen3" || pre == "deepseek-r1-qwen") {
      pre_tokenizer_ = PreTokenizer::kQwen2;
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "tokenizer pre-tokenizer '", pre,
          "' is not supported; supported: gpt2, default, llama-bpe, llama3, smaug-bpe, qwen2, "
          "qwen3, deepseek-r1-qwen"));
    }
  }

  token_bytes_.resize(n);
  is_control_.assign(n, 0);
  is_eos_.assign(n, 0);
  std::fill(std::begin(byte_tokens_), std::end(byte_tokens_), -1);
  std::vector<Special> specials;
  std::string bytes;
  for (size_t i = 0; i < n; ++i) {
    const std::string& text = vocab_.tokens[i];
    const int32_t type = vocab_.token_types[i];
    const int32_t id = static_cast<int32_t>(i);
    if (type == kTypeControl || type == kTypeUnknown || type == kTypeUserDefined) {
      token_bytes_[i] = text;
      is_control_[i] = type != kTypeUserDefined;
      if (!text.empty()) specials.push_back({text, id, type != kTypeUserDefined});
      continue;
    }
    if (type == kTypeUnused) {
      token_bytes_[i] = text;
      continue;
    }
    if (byte_level) {
      if (!ByteLevelBytes(text, &bytes)) bytes = text;  // not byte-mapped: its text as is
      token_bytes_[i] = bytes;
      if (type == kTypeNormal || type == kTypeByte) {
        piece_ids_.try_emplace(token_bytes_[i], id);
        if (bytes.size() == 1 && byte_tokens_[static_cast<uint8_t>(bytes[0])] < 0) {
          byte_tokens_[static_cast<uint8_t>(bytes[0])] = id;
        }
      }
    } else {
      const int byte = type == kTypeByte ? ParseByteToken(text) : -1;
      if (byte >= 0) {
        token_bytes_[i] = std::string(1, static_cast<char>(byte));
        if (byte_tokens_[byte] < 0) byte_tokens_[byte] = id;
        continue;
      }
      token_bytes_[i] = ReplaceAll(text, kSpaceMark, " ");
      const bool mergeable = vocab_.scores.empty() || std::isfinite(vocab_.scores[i]);
      if (type == kTypeNormal && mergeable) piece_ids_.try_emplace(text, id);
    }
  }

  if (byte_level) {
    absl::flat_hash_map<std::string_view, int32_t> by_text;
    for (size_t i = 0; i < n; ++i) {
      if (vocab_.token_types[i] == kTypeNormal || vocab_.token_types[i] == kTypeByte) {
        by_text.try_emplace(vocab_.tokens[i], static_cast<int32_t>(i));
      }
    }
    merges_.reserve(vocab_.merges.size());
    for (size_t rank = 0; rank < vocab_.merges.size(); ++rank) {
      const std::string& m = vocab_.merges[rank];
      const size_t space = m.find(' ', 1);
      if (space == std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat("tokenizer merge ", rank, " '", m,
                                                       "': expected two tokens separated by a "
                                                       "space"));
      }
      const std::string_view left(m.data(), space);
      const std::string_view right = std::string_view(m).substr(space + 1);
      auto l = by_text.find(left);
      auto r = by_text.find(right);
      auto merged = by_text.find(std::string(left) + std::string(right));
      if (l == by_text.end() || r == by_text.end() || merged == by_text.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer merge ", rank, " '", m, "': token '",
                         l == by_text.end()   ? std::string(left)
                         : r == by_text.end() ? std::string(right)
                                              : std::string(left) + std::string(right),
                         "' is not in the vocabulary"));
      }
      merges_.try_emplace(PairKey(l->second, r->second), (static_cast<uint64_t>(rank) << 32) |
                                                             static_cast<uint32_t>(merged->second));
    }
  }

  std::sort(specials.begin(), specials.end(), [](const Special& a, const Special& b) {
    if (a.text.size() != b.text.size()) return a.text.size() > b.text.size();
    return a.id < b.id;
  });
  specials_by_byte_.assign(256, {});
  for (Special& s : specials) {
    specials_by_byte_[static_cast<uint8_t>(s.text[0])].push_back(std::move(s));
  }

  if (vocab_.eos_id >= 0) is_eos_[vocab_.eos_id] = 1;
  for (int32_t id : vocab_.extra_eos_ids) is_eos_[id] = 1;
  eot_id_ = vocab_.extra_eos_ids.empty() ? vocab_.eos_id : vocab_.extra_eos_ids.front();
  return absl::OkStatus();
}

bool Tokenizer::IsEos(int32_t id) const { return id >= 0 && id < vocab_size() && is_eos_[id]; }

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < vocab_size() && is_control_[id];
}

std::string_view Tokenizer::TokenText(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return vocab_.tokens[id];
}

std::string_view Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return token_bytes_[id];
}

void Tokenizer::SplitSpecial(std::string_view text, bool parse_special,
                             std::vector<Fragment>* out) const {
  size_t start = 0;
  size_t i = 0;
  while (i < text.size()) {
    const Special* hit = nullptr;
    for (const Special& s : specials_by_byte_[static_cast<uint8_t>(text[i])]) {
      if ((parse_special || !s.control) && text.compare(i, s.text.size(), s.text) == 0) {
        hit = &s;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > start) out->push_back({text.substr(start, i - start), -1});
    out->push_back({text.substr(i, hit->text.size()), hit->id});
    i += hit->text.size();
    start = i;
  }
  if (start < text.size()) out->push_back({text.substr(start), -1});
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && vocab_.add_bos && vocab_.bos_id >= 0) out.push_back(vocab_.bos_id);
  std::vector<Fragment> fragments;
  SplitSpecial(text, parse_special, &fragments);
  bool after_special = true;
  std::vector<std::string_view> pieces;
  for (const Fragment& f : fragments) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    if (vocab_.kind == VocabSpec::Kind::kByteLevelBpe) {
      pieces.clear();
      PreTokenize(pre_tokenizer_, f.text, &pieces);
      for (std::string_view piece : pieces) EncodeByteLevelPiece(piece, &out);
    } else {
      // SentencePiece: every text fragment at the start or after a special token gets the
      // dummy space prefix (as llama.cpp and Hugging Face's legacy Llama tokenizer do).
      std::string s = (add_space_prefix_ && after_special) ? std::string(kSpaceMark) : "";
      s += ReplaceAll(f.text, " ", kSpaceMark);
      EncodeSentencePiece(s, &out);
    }
    after_special = false;
  }
  return out;
}

void Tokenizer::EncodeByteLevelPiece(std::string_view piece, std::vector<int32_t>* out) const {
  if (piece.empty()) return;
  if (ignore_merges_ || piece.size() == 1) {
    if (auto it = piece_ids_.find(piece); it != piece_ids_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  // Symbols start as single bytes; a byte the vocabulary lacks becomes the unknown token (or is
  // dropped when there is none: no byte-level vocabulary in use lacks a byte).
  thread_local std::vector<int32_t> sym;
  sym.clear();
  for (char c : piece) {
    const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
    if (id >= 0) {
      sym.push_back(id);
    } else if (vocab_.unk_id >= 0) {
      sym.push_back(vocab_.unk_id);
    }
  }
  if (sym.size() <= 48) {
    // Short pieces (almost all of them): repeatedly merge the lowest-ranked adjacent pair,
    // leftmost first. Quadratic, but on a few symbols in cache this beats any heap.
    while (sym.size() > 1) {
      uint64_t best = std::numeric_limits<uint64_t>::max();
      size_t best_at = 0;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        auto it = merges_.find(PairKey(sym[i], sym[i + 1]));
        if (it != merges_.end() && it->second < best) {
          best = it->second;
          best_at = i;
        }
      }
      if (best == std::numeric_limits<uint64_t>::max()) break;
      sym[best_at] = static_cast<int32_t>(best & 0xFFFFFFFF);
      sym.erase(sym.begin() + best_at + 1);
    }
    out->insert(out->end(), sym.begin(), sym.end());
    return;
  }
  // Long pieces (runs of spaces or symbols): a linked list of symbols and a heap of candidate
  // merges ordered by (rank, position); entries made stale by earlier merges are skipped.
  const int32_t n = static_cast<int32_t>(sym.size());
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (int32_t i = 0; i < n; ++i) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }
  struct Candidate {
    uint64_t rank_and_id;
    int32_t left;
    int32_t left_token;
    int32_t right_token;
    bool operator>(const Candidate& o) const {
      return (rank_and_id >> 32) != (o.rank_and_id >> 32)
                 ? (rank_and_id >> 32) > (o.rank_and_id >> 32)
                 : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push = [&](int32_t left) {
    if (left < 0 || next[left] < 0) return;
    const int32_t right = next[left];
    auto it = merges_.find(PairKey(sym[left], sym[right]));
    if (it != merges_.end()) heap.push({it->second, left, sym[left], sym[right]});
  };
  for (int32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    const int32_t left = c.left;
    if (!alive[left] || next[left] < 0 || sym[left] != c.left_token ||
        sym[next[left]] != c.right_token) {
      continue;
    }
    const int32_t right = next[left];
    sym[left] = static_cast<int32_t>(c.rank_and_id & 0xFFFFFFFF);
    alive[right] = 0;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push(prev[left]);
    push(left);
  }
  for (int32_t i = 0; i >= 0; i = next[i]) out->push_back(sym[i]);
}

void Tokenizer::EncodeSentencePiece(std::string_view text, std::vector<int32_t>* out) const {
  struct Symbol {
    int32_t prev, next;
    uint32_t offset, length;
  };
  std::vector<Symbol> symbols;
  for (size_t pos = 0; pos < text.size();) {
    size_t len;
    DecodeUtf8(text, pos, &len);
    const int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back(
        {index - 1, index + 1, static_cast<uint32_t>(pos), static_cast<uint32_t>(len)});
    pos += len;
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  struct Bigram {
    float score;
    int32_t left;
    uint32_t length;
    bool operator<(const Bigram& o) const {
      // The top is the highest score, then the leftmost position.
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> heap;
  auto try_add = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = symbols[left].next;
    if (right < 0) return;
    const uint32_t length = symbols[left].length + symbols[right].length;
    auto it = piece_ids_.find(text.substr(symbols[left].offset, length));
    if (it == piece_ids_.end()) return;
    const float score = vocab_.scores.empty() ? 0.0f : vocab_.scores[it->second];
    heap.push({score, left, length});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) try_add(i);
  while (!heap.empty()) {
    const Bigram b = heap.top();
    heap.pop();
    Symbol& left = symbols[b.left];
    if (left.length == 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    if (right.length == 0 || left.length + right.length != b.length) continue;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = b.left;
    try_add(left.prev);
    try_add(b.left);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const std::string_view piece = text.substr(symbols[i].offset, symbols[i].length);
    if (auto it = piece_ids_.find(piece); it != piece_ids_.end()) {
      out->push_back(it->second);
      continue;
    }
    for (char c : piece) {
      const int32_t id = byte_tokens_[static_cast<uint8_t>(c)];
      if (id >= 0) {
        out->push_back(id);
      } else if (vocab_.unk_id >= 0) {
        out->push_back(vocab_.unk_id);
      }
    }
  }
}

void Tokenizer::AppendDecoded(int32_t id, bool skip_special, bool* at_text_start,
                              std::string* out) const {
  if (id < 0 || id >= vocab_size()) return;
  const int32_t type = vocab_.token_types[id];
  const bool special = type == kTypeControl || type == kTypeUnknown || type == kTypeUserDefined;
  if (special) {
    *at_text_start = true;
    if (!(skip_special && is_control_[id])) out->append(token_bytes_[id]);
    return;
  }
  std::string_view bytes = token_bytes_[id];
  if (vocab_.kind == VocabSpec::Kind::kSentencePiece && add_space_prefix_ && *at_text_start &&
      !bytes.empty() && bytes[0] == ' ') {
    bytes.remove_prefix(1);
  }
  *at_text_start = false;
  out->append(bytes);
}

std::string Tokenizer::Decode(absl::Span<const int32_t> ids, bool skip_special) const {
  std::string out;
  bool at_text_start = true;
  for (int32_t id : ids) AppendDecoded(id, skip_special, &at_text_start, &out);
  return out;
}

std::string Tokenizer::Summary() const {
  auto name = [&](int32_t id) {
    return id < 0 ? std::string("none") : absl::StrCat(std::string(TokenText(id)), " (", id, ")");
  };
  std::string s = vocab_.kind == VocabSpec::Kind::kByteLevelBpe
                      ? absl::StrCat("byte-level BPE, ", vocab_size(), " tokens, ",
                                     vocab_.merges.size(), " merges, pre-tokenizer ",
                                     vocab_.pre_tokenizer.empty() ? "gpt2" : vocab_.pre_tokenizer)
                      : absl::StrCat("SentencePiece BPE, ", vocab_size(), " tokens");
  absl::StrAppend(&s, ", bos ", name(vocab_.bos_id), vocab_.add_bos ? " added" : " not added",
                  ", eos ", name(vocab_.eos_id));
  for (int32_t id : vocab_.extra_eos_ids) absl::StrAppend(&s, ", stop ", name(id));
  absl::StrAppend(&s, ", chat template: ",
                  vocab_.chat_template.empty()
                      ? std::string("none")
                      : absl::StrCat(vocab_.chat_template.size(), " bytes"));
  return s;
}

std::string StreamDecoder::Feed(int32_t id) {
  tokenizer_.AppendDecoded(id, skip_special_, &at_text_start_, &pending_);
  const size_t complete = CompleteUtf8PrefixLength(pending_);
  std::string out = pending_.substr(0, complete);
  pending_.erase(0, complete);
  return out;
}

std::string StreamDecoder::Flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

}  // namespace tandem::model
