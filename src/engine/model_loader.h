// Turns a model reference into what the engine runs: the weights as an EngineModel plus the
// tokenizer (and its chat template) when the model carries a vocabulary.
//
// References:
//   - a GGUF file or a Hugging Face folder, read through the model library (mmap'd weights);
//   - "random:<preset>[:<dtype>[:<seed>]]", e.g. "random:small:bf16": random weights of one of
//     the shapes `tandem model create` writes (model::PresetConfig) built in memory, with the
//     demo vocabulary, for trying and profiling a shape without a file.
//
//   TANDEM_ASSIGN_OR_RETURN(LoadedModel loaded, LoadEngineModel("random:small:q8_0"));
//   TANDEM_ASSIGN_OR_RETURN(auto engine, Engine::Create(loaded.model, options));
//
// Thread-safety: stateless; the result is immutable and may be shared.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "model/model.h"
#include "model/tokenizer.h"

namespace tandem::engine {

struct LoadedModel {
  EngineModel model;
  std::shared_ptr<const model::Tokenizer> tokenizer;  // null when the model has no vocabulary
  std::string chat_template;                          // Jinja source; empty when none
};

absl::StatusOr<LoadedModel> LoadEngineModel(const std::string& reference);

// The engine's config for a model library config (the same architecture, shape and RoPE).
TransformerConfig EngineConfig(const model::ModelConfig& config);

// The engine's view of an already loaded model file (weights stay in `model`'s mapping, which
// the result keeps alive). InvalidArgument naming the tensor for weight types the engine does
// not compute with (supported: F32, F16, BF16, Q8_0, Q4_K, Q6_K).
absl::StatusOr<EngineModel> EngineModelFromModel(std::shared_ptr<const model::Model> model);

}  // namespace tandem::engine
