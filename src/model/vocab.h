// VocabSpec: a tokenizer vocabulary in the shape GGUF stores it (`tokenizer.ggml.*` keys).
//
// It is the hand-off between the model file readers/writer (gguf.h, safetensors.h,
// model_writer.h) and the tokenizers (tokenizer.h): readers fill it from GGUF metadata, the
// tokenizers are built from it (or from a Hugging Face tokenizer.json), and the dummy-model
// writer stores the demo vocabulary it gets from DemoVocab().
//
// Thread-safety: plain data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::model {

struct VocabSpec {
  enum class Kind {
    kByteLevelBpe,   // GGUF tokenizer.ggml.model == "gpt2" (Llama-3, Qwen2/3, GPT-2)
    kSentencePiece,  // GGUF tokenizer.ggml.model == "llama" (Llama-2, Mistral v0.1)
  };
  Kind kind = Kind::kByteLevelBpe;
  std::vector<std::string> tokens;  // id -> token text exactly as GGUF stores it
  std::vector<float> scores;        // SentencePiece merge scores (empty for byte-level BPE)
  // GGUF token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
  std::vector<int32_t> token_types;
  std::vector<std::string> merges;  // "left right" pairs, byte-level BPE only, by rank
  std::string pre_tokenizer;        // GGUF tokenizer.ggml.pre: "gpt2", "llama-bpe", "qwen2", ...
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t pad_id = -1;
  int32_t unk_id = -1;
  bool add_bos = false;
  std::vector<int32_t> extra_eos_ids;  // e.g. <|eot_id|> besides <|end_of_text|>
  std::string chat_template;           // Jinja source, empty when the model carries none
};

// The vocabulary embedded in every dummy-weight model Tandem writes: a real byte-level BPE
// tokenizer (with special tokens and a ChatML chat template), deterministic across runs.
absl::StatusOr<VocabSpec> DemoVocab(int32_t vocab_size);

// A Hugging Face `tokenizer.json` (and the matching `tokenizer_config.json`, which carries the
// chat template and special tokens) describing `vocab`, for writing safetensors model folders.
std::string VocabToTokenizerJson(const VocabSpec& vocab);
std::string VocabToTokenizerConfigJson(const VocabSpec& vocab);

}  // namespace tandem::model
