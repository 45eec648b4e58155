// The forward pass of Llama-family decoders (llama, qwen2, qwen3) over the paged KV cache,
// batched over a mix of prefill chunks and decode tokens of many sequences in one step.
//
// Per layer: RMSNorm -> Q/K/V projections (+bias for qwen2; per-head RMSNorm of Q and K for
// qwen3) -> RoPE (optionally with Llama-3 frequency scaling) -> K/V written into the sequence's
// blocks -> grouped-query causal attention over the sequence's blocks -> output projection ->
// residual -> RMSNorm -> SwiGLU MLP -> residual; then the final RMSNorm and the LM head (tied to
// the embeddings when the model has no separate output matrix).
//
//   TANDEM_ASSIGN_OR_RETURN(auto model, Transformer::Create(config, weights, &thread_pool));
//   std::vector<SequenceChunk> batch = {{.tokens = prompt, .start = 0, .blocks = table}};
//   std::vector<float> logits(batch.size() * config.vocab_size);
//   TANDEM_RETURN_IF_ERROR(model->Forward(batch, kv_pool, logits.data()));
//
// Thread-safety: one Forward at a time per Transformer (it owns scratch buffers); kernels run on
// the thread pool given at creation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/block_pool.h"
#include "engine/kernels.h"
#include "engine/thread_pool.h"
#include "engine/weight_types.h"

namespace tandem::engine {

enum class Architecture { kLlama, kQwen2, kQwen3 };
// Which dimensions RoPE rotates together: (i, i + d/2) as in Hugging Face checkpoints and
// Qwen GGUF files, or (2i, 2i+1) as in Llama GGUF files (whose converter permutes Q and K).
enum class RopeStyle { kHalf, kInterleaved };

struct TransformerConfig {
  Architecture architecture = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeStyle rope_style = RopeStyle::kHalf;
  // Llama-3 RoPE frequency scaling (rope_scaling.rope_type == "llama3").
  bool rope_llama3_scaling = false;
  double rope_factor = 8.0;
  double rope_low_freq_factor = 1.0;
  double rope_high_freq_factor = 4.0;
  int64_t rope_original_context = 8192;
  // Linear RoPE scaling (rope_scaling.rope_type == "linear"): positions divided by this.
  double rope_linear_factor = 1.0;
  int64_t max_context = 4096;
};

// Every tensor the forward pass reads. Vectors (norm weights, biases) are 1-row matrices.
struct LayerWeights {
  WeightMatrix attn_norm;
  WeightMatrix wq, wk, wv, wo;
  WeightMatrix q_bias, k_bias, v_bias;  // qwen2
  WeightMatrix q_norm, k_norm;          // qwen3, [head_dim]
  WeightMatrix ffn_norm;
  WeightMatrix w_gate, w_up, w_down;
};
struct TransformerWeights {
  WeightMatrix token_embedding;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  WeightMatrix output_norm;
  WeightMatrix lm_head;  // [vocab, hidden]; empty = tied to token_embedding
};

// One sequence's share of a forward step: `tokens` at positions start .. start+size-1, whose KV
// goes into (and whose attention reads from) `blocks`, the sequence's block table, which must
// already cover every position up to start+size-1.
struct SequenceChunk {
  std::span<const int32_t> tokens;
  int64_t start = 0;
  std::span<const BlockId> blocks;
  enum class Logits { kNone, kLast, kAll };
  Logits logits = Logits::kLast;
};

// Called after layer `layer`'s keys and values of the whole step are in the blocks (the hook
// for layer-wise KV push to a decode worker).
using LayerDoneCallback = std::function<void(int layer)>;

class Transformer {
 public:
  // Matrices the kernels read faster in another layout are packed into copies the transformer
  // owns (kernels.h PackWeights); `release_source`, when set, is called with each packed
  // matrix's original bytes as they are copied (e.g. to drop a model file's pages from memory).
  static absl::StatusOr<std::unique_ptr<Transformer>> Create(
      const TransformerConfig& config, const TransformerWeights& weights, ThreadPool* pool,
      const std::function<void(const uint8_t* first, int64_t bytes)>& release_source = nullptr);

  const TransformerConfig& config() const { return config_; }
  // Bytes of weights one decode step streams (all matrices incl. the LM head).
  int64_t weight_bytes() const { return weight_bytes_; }
  // The weight bytes steps read, each range once: the matrices as the kernels use them (packed
  // copies, or the caller's memory such as a model file's mapping), the token embedding, and
  // the small vectors copied at creation.
  std::vector<std::pair<const void*, int64_t>> WeightRanges() const;
  // The KV layout this model needs (block size and element type from the caller).
  KvLayout kv_layout(int block_size, KvType type = KvType::kF32) const;

  // Runs one step. Writes the logits rows the chunks ask for, in chunk order, into `logits`
  // (vocab_size floats per row). InvalidArgument for a token id outside the vocabulary, a
  // position past max_context or a block table too short.
  absl::Status Forward(std::span<const SequenceChunk> batch, const BlockPool& kv, float* logits,
                       const LayerDoneCallback& on_layer_done = nullptr);

  // Rows of logits `batch` produces.
  static int64_t LogitRows(std::span<const SequenceChunk> batch);

 private:
  Transformer(const TransformerConfig& config, const TransformerWeights& weights, ThreadPool* pool);
  // Attention of rows [first, first + rows) of the step; q_ holds their queries (slice-relative)
  // and receives their outputs.
  void Attention(int layer, std::span<const SequenceChunk> batch, const BlockPool& kv,
                 int64_t first, int64_t rows);

  TransformerConfig config_;
  TransformerWeights weights_;  // views; packed matrices point into packed_
  std::vector<PackedWeights> packed_;
  ThreadPool* pool_;
  int64_t weight_bytes_ = 0;
  std::vector<double> inverse_frequencies_;  // head_dim / 2

  // Small vectors dequantized once.
  struct LayerVectors {
    std::vector<float> attn_norm, ffn_norm, q_bias, k_bias, v_bias, q_norm, k_norm;
  };
  std::vector<LayerVectors> vectors_;
  std::vector<float> output_norm_;

  // Scratch, sized for the largest step seen: x_ for all its rows, the rest for one slice.
  std::vector<float> x_, normed_, q_, k_, v_, gate_, up_, down_, rope_cos_, rope_sin_;
  std::vector<int64_t> positions_;
  std::vector<int32_t> row_chunk_;
};

}  // namespace tandem::engine
