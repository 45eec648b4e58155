// The mapping between GGUF metadata and Tandem's model description: ModelConfig from the
// `general.*` and `{arch}.*` keys, VocabSpec from the `tokenizer.ggml.*` keys, and back (for the
// writer). Key names follow llama.cpp's GGUF conventions (docs/model-formats.md lists them).
//
//   TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromGguf(gguf, "model.gguf"));
//   TANDEM_ASSIGN_OR_RETURN(std::optional<VocabSpec> vocab, VocabFromGguf(gguf, "model.gguf"));
//
// Thread-safety: stateless functions.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/gguf.h"
#include "model/model_config.h"
#include "model/vocab.h"

namespace tandem::model {

// Reads the architecture and dimensions. vocab_size comes from `{arch}.vocab_size`, else the
// number of tokens, else token_embd.weight's shape. Llama-3 rope scaling is read from
// `{arch}.rope.scaling.*` keys or, as llama.cpp's converter writes it, recognised from the
// `rope_freqs.weight` tensor (`rope_freqs`, when non-null, are its values).
absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf, std::string_view source,
                                           const std::vector<float>* rope_freqs = nullptr);

// The vocabulary in `tokenizer.ggml.*`; nullopt when the file has none. Errors name the key.
absl::StatusOr<std::optional<VocabSpec>> VocabFromGguf(const GgufFile& gguf,
                                                       std::string_view source);

// Writes `general.architecture`, `general.name` and the `{arch}.*` keys of `config`.
void ConfigToGguf(const ModelConfig& config, GgufWriter& writer);
// Writes the `tokenizer.ggml.*` keys and `tokenizer.chat_template`.
void VocabToGguf(const VocabSpec& vocab, GgufWriter& writer);

// Per-frequency RoPE scaling factors of Llama-3 scaling (what llama.cpp's converter stores in
// `rope_freqs.weight`): head_dim / 2 values.
std::vector<float> Llama3RopeFactors(const ModelConfig& config);

}  // namespace tandem::model
