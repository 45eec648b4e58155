// Byte-level BPE training: learns merges from a text corpus, deterministically.
//
// The demo vocabulary (vocab.h: DemoVocab) is trained with it each time a dummy model is
// written, so it is fast: a heap of pair counts with lazy invalidation and an index from pairs to
// the words that contain them, so each merge touches only the affected words.
//
//   BpeTrainResult r = TrainByteLevelBpe(text, PreTokenizer::kLlama3, /*max_tokens=*/4000);
//   // r.tokens[0..255] are the single bytes; r.merges[i] made some token of r.tokens.
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/unicode.h"

namespace tandem::model {

struct BpeTrainResult {
  std::vector<std::string> tokens;  // raw bytes; tokens[b] is the single byte b for b < 256
  std::vector<std::pair<int32_t, int32_t>> merges;  // by rank: (left id, right id) into tokens
};

// Learns merges until `max_tokens` tokens exist or every word is one token. Ties between
// equally frequent pairs go to the pair with the smaller ids, so results are reproducible.
BpeTrainResult TrainByteLevelBpe(std::string_view corpus, PreTokenizer pre_tokenizer,
                                 int32_t max_tokens);

// The hand-written English text the demo vocabulary learns from, and the full training corpus:
// that text plus deterministically generated sentences, numbers and code.
std::string_view DemoCorpusText();
std::string DemoTrainingCorpus();

}  // namespace tandem::model
