// The dummy-weight model writer behind `tandem model create`: writes a complete model of any
// Llama-family shape (GGUF file, or Hugging Face folder with safetensors) with seeded random
// weights and Tandem's demo tokenizer and chat template, for tests and benchmarks.
//
// Reproducible bit for bit: every weight is a function of (seed, tensor name, element index)
// only, drawn from splitmix64 (no std:: distributions), so the same options give the same bytes
// on any machine, and the GGUF and safetensors forms of one seed hold the same values (Llama
// GGUF files store Q and K with rows permuted for interleaved RoPE, as llama.cpp's converter
// does). Weights are uniform with standard deviation 1/sqrt(fan_in) (embeddings and LM head
// 1/sqrt(hidden)), norms are 1, biases small, so activations stay O(1) however long a model
// runs. Tensors are generated and written row by row: memory use does not grow with the model.
//
//   TANDEM_ASSIGN_OR_RETURN(ModelConfig config, PresetConfig("tiny"));
//   TANDEM_RETURN_IF_ERROR(WriteDummyModel({.config = config, .dtype = DType::kQ8_0,
//                                           .format = ModelFormat::kGguf, .seed = 7,
//                                           .out = "tiny.gguf"}));
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/dtype.h"
#include "model/model.h"
#include "model/model_config.h"

namespace tandem::model {

// "tiny" (2 layers, hidden 64, 4 heads / 2 KV heads, vocab 512: unit tests), "small" (8
// layers, hidden 512, vocab 8192, ~29M parameters: demos on a few CPU cores), "qwen2.5-0.5b"
// and "llama-3-8b" (the real shapes). InvalidArgument naming the presets otherwise.
absl::StatusOr<ModelConfig> PresetConfig(std::string_view preset);
std::vector<std::string> PresetNames();

struct DummyModelOptions {
  ModelConfig config;
  DType dtype = DType::kBF16;  // 2-D tensors; norms and biases are always F32
  ModelFormat format = ModelFormat::kGguf;
  uint64_t seed = 1;
  // A .gguf file, or the folder to create for safetensors.
  std::string out;
  // safetensors: split the weights into model-0000i-of-0000n.safetensors shards of at most this
  // many bytes (plus model.safetensors.index.json) when they are bigger.
  uint64_t max_shard_bytes = 5'000'000'000;
  // Called with (bytes written, total bytes) as the writer goes.
  std::function<void(uint64_t, uint64_t)> on_progress;
};

// Writes the model. Checks the config (ValidateConfig), the dtype (F32, F16, BF16, Q8_0; Q8_0
// only for GGUF) and that quantized rows are whole blocks. The vocabulary is the demo vocabulary
// of config.vocab_size tokens (bos/eos ids are taken from it).
absl::Status WriteDummyModel(const DummyModelOptions& options);

// The value the writer stores at (row, column) of tensor `name` (Hugging Face row order) before
// conversion to the target dtype, for tests.
void DummyTensorRow(const ModelConfig& config, uint64_t seed, const ExpectedTensor& tensor,
                    int64_t row, float* out);

// The Hugging Face row that Llama GGUF row `gguf_row` of Q or K holds (llama.cpp's permutation
// for interleaved RoPE), with `heads` heads of `head_dim`.
int64_t LlamaGgufRowToHuggingFaceRow(int64_t gguf_row, int64_t heads, int64_t head_dim);

}  // namespace tandem::model
