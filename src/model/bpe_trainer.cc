#include "model/bpe_trainer.h"

#include <queue>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "model/internal/text.h"

namespace tandem::model {
namespace {

using internal::PairKey;

struct Word {
  std::vector<int32_t> symbols;
  int64_t count = 0;
};

// Heap entry; the heap's top is the most frequent pair, then the smallest ids.
struct Candidate {
  int64_t count;
  int32_t left;
  int32_t right;
  bool operator<(const Candidate& o) const {
    return std::tie(count, o.left, o.right) < std::tie(o.count, left, right);
  }
};

}  // namespace

BpeTrainResult TrainByteLevelBpe(std::string_view corpus, PreTokenizer pre_tokenizer,
                                 int32_t max_tokens) {
  BpeTrainResult result;
  for (int b = 0; b < 256; ++b) result.tokens.emplace_back(1, static_cast<char>(b));

  // Unique words with their counts, in order of first appearance (deterministic).
  std::vector<std::string_view> pieces;
  PreTokenize(pre_tokenizer, corpus, &pieces);
  absl::flat_hash_map<std::string_view, int32_t> word_index;
  std::vector<Word> words;
  for (std::string_view piece : pieces) {
    auto [it, inserted] = word_index.try_emplace(piece, static_cast<int32_t>(words.size()));
    if (inserted) {
      Word w;
      for (char c : piece) w.symbols.push_back(static_cast<unsigned char>(c));
      words.push_back(std::move(w));
    }
    words[it->second].count++;
  }

  absl::flat_hash_map<uint64_t, int64_t> pair_counts;
  absl::flat_hash_map<uint64_t, std::vector<int32_t>> pair_words;  // may hold stale entries
  for (int32_t w = 0; w < static_cast<int32_t>(words.size()); ++w) {
    const auto& s = words[w].symbols;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const uint64_t key = PairKey(s[i], s[i + 1]);
      pair_counts[key] += words[w].count;
      auto& list = pair_words[key];
      if (list.empty() || list.back() != w) list.push_back(w);
    }
  }
  std::priority_queue<Candidate> heap;
  for (const auto& [key, count] : pair_counts) {
    heap.push({count, static_cast<int32_t>(key >> 32), static_cast<int32_t>(key & 0xFFFFFFFF)});
  }
  absl::flat_hash_map<std::string, int32_t> token_ids;
  for (int32_t i = 0; i < 256; ++i) token_ids[result.tokens[i]] = i;

  while (static_cast<int32_t>(result.tokens.size()) < max_tokens && !heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const uint64_t key = PairKey(top.left, top.right);
    auto count_it = pair_counts.find(key);
    if (count_it == pair_counts.end() || count_it->second != top.count) continue;  // stale
    std::string merged = result.tokens[top.left] + result.tokens[top.right];
    int32_t new_id;
    if (auto it = token_ids.find(merged); it != token_ids.end()) {
      new_id = it->second;  // the same bytes were already made by another pair
    } else {
      new_id = static_cast<int32_t>(result.tokens.size());
      token_ids.emplace(merged, new_id);
      result.tokens.push_back(std::move(merged));
    }
    result.merges.emplace_back(top.left, top.right);

    // Rewrite each word that contains the pair, adjusting the counts of neighbouring pairs.
    absl::flat_hash_map<uint64_t, int64_t> delta;
    std::vector<int32_t> affected = std::move(pair_words[key]);
    pair_words.erase(key);
    for (int32_t w : affected) {
      auto& s = words[w].symbols;
      const int64_t c = words[w].count;
      std::vector<int32_t> out;
      out.reserve(s.size());
      bool changed = false;
      for (size_t i = 0; i < s.size();) {
        if (i + 1 < s.size() && s[i] == top.left && s[i + 1] == top.right) {
          out.push_back(new_id);
          i += 2;
          changed = true;
        } else {
          out.push_back(s[i]);
          ++i;
        }
      }
      if (!changed) continue;
      for (size_t i = 0; i + 1 < s.size(); ++i) delta[PairKey(s[i], s[i + 1])] -= c;
      for (size_t i = 0; i + 1 < out.size(); ++i) {
        const uint64_t k = PairKey(out[i], out[i + 1]);
        delta[k] += c;
        auto& list = pair_words[k];
        if (list.empty() || list.back() != w) list.push_back(w);
      }
      s = std::move(out);
    }
    for (const auto& [k, d] : delta) {
      if (d == 0) continue;
      int64_t& count = pair_counts[k];
      count += d;
      if (count <= 0) {
        pair_counts.erase(k);
      } else {
        heap.push({count, static_cast<int32_t>(k >> 32), static_cast<int32_t>(k & 0xFFFFFFFF)});
      }
    }
  }
  return result;
}

std::string DemoTrainingCorpus() {
  std::string text(DemoCorpusText());
  // Generated sentences widen the vocabulary beyond the hand-written text: a fixed linear
  // congruential generator picks words, so the corpus is the same on every machine.
  static const char* const kSubjects[] = {
      "The server", "A request", "The model",  "Our team",      "The scheduler", "Every worker",
      "The cache",  "A user",    "The router", "This function", "The test",      "The cluster",
      "My friend",  "The city",  "A student",  "The teacher",   "The engine",    "Each token"};
  static const char* const kVerbs[] = {"reads",  "writes",    "sends",   "receives", "measures",
                                       "prints", "checks",    "stores",  "returns",  "starts",
                                       "stops",  "loads",     "answers", "counts",   "moves",
                                       "builds", "describes", "finds",   "keeps",    "shares"};
  static const char* const kObjects[] = {"the prompt",    "a new block",       "the first answer",
                                         "every message", "the latest result", "a long document",
                                         "the weights",   "two files",         "the configuration",
                                         "the memory",    "a short story",     "the schedule",
                                         "the data",      "an error",          "the report",
                                         "the queue",     "several tokens",    "the whole page"};
  static const char* const kEndings[] = {" before noon.",
                                         " quickly.",
                                         " again and again.",
                                         " without a problem.",
                                         " in the morning.",
                                         " when it is ready.",
                                         ", and then it waits.",
                                         " for the next step.",
                                         " on every machine.",
                                         " as fast as it can.",
                                         "?",
                                         "!"};
  uint64_t state = 0x5DEECE66DULL;
  auto next = [&](uint64_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (state >> 33) % n;
  };
  for (int i = 0; i < 1500; ++i) {
    absl::StrAppend(&text, kSubjects[next(std::size(kSubjects))], " ",
                    kVerbs[next(std::size(kVerbs))], " ", kObjects[next(std::size(kObjects))],
                    kEndings[next(std::size(kEndings))]);
    switch (next(6)) {
      case 0:
        absl::StrAppend(&text, " It took ", next(1000), ".", next(100), " ms.");
        break;
      case 1:
        absl::StrAppend(&text, "\n    value_", next(50), " = compute(", next(64), ", \"",
                        kVerbs[next(std::size(kVerbs))], "\");\n");
        break;
      case 2:
        absl::StrAppend(&text, "\n\n");
        break;
      default:
        absl::StrAppend(&text, " ");
    }
  }
  // Word families built from common English prefixes, roots and suffixes ("reconstruction",
  // "transportable", ...) and numbers: enough distinct words for vocabularies of several
  // thousand tokens.
  static const char* const kPrefixes[] = {"",   "re",    "un",  "pre",   "con", "dis",
                                          "in", "trans", "sub", "inter", "de",  "over"};
  static const char* const kRoots[] = {
      "form",  "port",  "struct", "duct", "ject",  "spect", "press", "tract", "dict",  "mit",
      "vert",  "pend",  "scribe", "cept", "sist",  "fer",   "pose",  "tain",  "clude", "sume",
      "solve", "serve", "mark",   "load", "build", "write", "read",  "count", "place", "store",
      "test",  "check", "mean",   "turn", "work",  "play",  "light", "cover", "order", "close"};
  static const char* const kSuffixes[] = {"",    "s",    "ed",   "ing",  "er",  "ion",
                                          "ive", "able", "ment", "ly",   "ers", "ions",
                                          "ure", "ness", "ful",  "ated", "ity"};
  for (const char* prefix : kPrefixes) {
    for (const char* root : kRoots) {
      absl::StrAppend(&text, next(4) == 0 ? "\n" : " ");
      for (const char* suffix : kSuffixes) {
        if (next(3) == 0) continue;
        absl::StrAppend(&text, " ", next(7) == 0 ? "The " : "", prefix, root, suffix,
                        next(5) == 0 ? "," : "");
      }
    }
  }
  for (int i = 0; i < 2000; ++i) {
    absl::StrAppend(&text, i % 16 == 0 ? "\n" : " ", next(1000), next(4) == 0 ? "." : "",
                    next(3) == 0 ? "%" : "");
  }
  return text;
}

}  // namespace tandem::model
