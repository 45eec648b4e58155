// ModelConfig: the shape and hyper-parameters of a Llama-family decoder, read from GGUF
// metadata (`llama.*`, `qwen2.*`, `qwen3.*` keys) or a Hugging Face `config.json`.
//
// Architectures: `llama` (Llama 2/3, Mistral: GQA, RoPE incl. Llama-3 rope scaling, SwiGLU,
// RMSNorm, tied or untied embeddings), `qwen2` (adds q/k/v biases), `qwen3` (adds per-head
// RMSNorm of q and k). Anything else is refused by name.
//
//   TANDEM_ASSIGN_OR_RETURN(ModelConfig config, ConfigFromHuggingFaceJson(text, "config.json"));
//   int64_t bytes = KvBytesPerToken(config, DType::kBF16);
//
// Thread-safety: plain data and stateless functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/dtype.h"

namespace tandem::model {

enum class Architecture { kLlama, kQwen2, kQwen3 };

// "llama", "qwen2", "qwen3".
std::string ArchitectureName(Architecture architecture);
// Accepts the GGUF names ("llama", "qwen2", "qwen3"), the config.json `model_type` values (the
// same) and the `architectures` class names ("LlamaForCausalLM", "MistralForCausalLM",
// "Qwen2ForCausalLM", "Qwen3ForCausalLM"); "mistral" maps to llama. Anything else:
// InvalidArgument "architecture 'X' is not supported (supported: llama, qwen2, qwen3)".
absl::StatusOr<Architecture> ParseArchitecture(std::string_view name);

// Which dimensions RoPE rotates together. Hugging Face checkpoints and Qwen GGUF files pair
// (i, i + head_dim/2) (kHalf, llama.cpp's "NEOX" mode); Llama GGUF files pair (2i, 2i+1)
// (kInterleaved) because the GGUF converter permutes the rows of Q and K.
enum class RopeStyle { kHalf, kInterleaved };

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  // Llama-3 only.
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  std::string name;  // general.name or the folder name; informational

  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // usually hidden_size / num_heads; qwen3 sets it explicitly
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::kHalf;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 4096;  // context length
  bool tie_word_embeddings = false;        // no output.weight: the LM head is token_embd
  bool attention_bias = false;             // q/k/v biases (qwen2)
  bool qk_norm = false;                    // per-head RMSNorm of q and k (qwen3)
  int32_t bos_id = -1;
  int32_t eos_id = -1;
};

// The defaults each architecture implies (attention_bias for qwen2, qk_norm for qwen3).
void ApplyArchitectureDefaults(ModelConfig& config);

// Checks that dimensions are positive and consistent (heads divide, head_dim even, ...).
// `source` names the file in the error.
absl::Status ValidateConfig(const ModelConfig& config, std::string_view source);

// Parses a Hugging Face config.json. `source` (the file name) prefixes every error, which also
// names the key and what was expected.
absl::StatusOr<ModelConfig> ConfigFromHuggingFaceJson(std::string_view json_text,
                                                      std::string_view source);
// The config.json Tandem writes for `config` (model_type, architectures, dims, rope_scaling).
std::string ConfigToHuggingFaceJson(const ModelConfig& config);

// Bytes of K and V for one token over all layers: 2 * layers * kv_heads * head_dim * element
// size (ByteSize for quantized KV types).
int64_t KvBytesPerToken(const ModelConfig& config, DType kv_dtype);

// Parameters the config implies (embeddings, attention, MLP, norms, biases, LM head if untied).
int64_t ParameterCount(const ModelConfig& config);

// A one-line summary: "llama, 2 layers, hidden 64, heads 4/2 x 16, ffn 172, vocab 512, ...".
std::string DescribeConfig(const ModelConfig& config);

}  // namespace tandem::model
