#include "engine/transformer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "engine/kernels.h"

namespace tandem::engine {
namespace {

// Rows per slice of a layer (see Forward): a 32-sequence decode step is one slice, and the int8
// and BF16 kernels run as fast on 32 rows as on more, so longer slices would only grow the
// per-slice buffers (for qwen2.5-0.5b the MLP's 2 x 32 x 4864 floats).
constexpr int64_t kSliceRows = 32;

absl::Status CheckMatrix(const WeightMatrix& m, const std::string& name, int64_t rows,
                         int64_t cols) {
  if (m.empty()) return absl::InvalidArgumentError(absl::StrCat("missing weight ", name));
  if (m.rows != rows || m.cols != cols) {
    return absl::InvalidArgumentError(absl::StrCat("weight ", name, " has shape [", m.rows, ", ",
                                                   m.cols, "], expected [", rows, ", ", cols, "]"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> LoadVector(const WeightMatrix& m, const std::string& name,
                                              int64_t size) {
  if (m.empty()) return absl::InvalidArgumentError(absl::StrCat("missing weight ", name));
  if (m.rows * m.cols != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", name, " has ", m.rows * m.cols, " elements, expected ", size));
  }
  std::vector<float> values(size);
  for (int64_t r = 0; r < m.rows; ++r) DequantizeWeightRow(m, r, values.data() + r * m.cols);
  return values;
}

void RmsNorm(const float* x, const float* weight, int64_t n, double eps, float* out) {
  // Eight partial sums: a single one waits on each addition's latency, and a step norms every
  // row twice per layer.
  double partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) partial[k] += static_cast<double>(x[i + k]) * x[i + k];
  }
  for (; i < n; ++i) partial[0] += static_cast<double>(x[i]) * x[i];
  const double sum = ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
                     ((partial[4] + partial[5]) + (partial[6] + partial[7]));
  const float scale = static_cast<float>(1.0 / std::sqrt(sum / n + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Create(
    const TransformerConfig& c, const TransformerWeights& w, ThreadPool* pool,
    const std::function<void(const uint8_t*, int64_t)>& release_source) {
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_layers <= 0 ||
      c.num_heads <= 0 || c.num_kv_heads <= 0 || c.head_dim <= 0 || c.head_dim % 2 != 0 ||
      c.max_context <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config needs positive vocab, hidden, intermediate, layers, heads, kv heads, context "
        "and an even head dim; got vocab ",
        c.vocab_size, ", hidden ", c.hidden_size, ", intermediate ", c.intermediate_size,
        ", layers ", c.num_layers, ", heads ", c.num_heads, ", kv heads ", c.num_kv_heads,
        ", head dim ", c.head_dim, ", context ", c.max_context));
  }
  if (c.num_heads % c.num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("attention heads (", c.num_heads,
                                                   ") must be a multiple of kv heads (",
                                                   c.num_kv_heads, ")"));
  }
  if (static_cast<int64_t>(w.layers.size()) != c.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("model has weights for ", w.layers.size(),
                                                   " layers, config says ", c.num_layers));
  }
  const int64_t h = c.hidden_size, q_dim = c.num_heads * c.head_dim,
                kv_dim = c.num_kv_heads * c.head_dim, ff = c.intermediate_size;
  TANDEM_RETURN_IF_ERROR(CheckMatrix(w.token_embedding, "token_embd", c.vocab_size, h));
  if (!w.lm_head.empty()) TANDEM_RETURN_IF_ERROR(CheckMatrix(w.lm_head, "output", c.vocab_size, h));
  auto model = std::unique_ptr<Transformer>(new Transformer(c, w, pool));
  TANDEM_ASSIGN_OR_RETURN(model->output_norm_, LoadVector(w.output_norm, "output_norm", h));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = w.layers[l];
    const std::string p = absl::StrCat("blk.", l, ".");
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.wq, p + "attn_q", q_dim, h));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.wk, p + "attn_k", kv_dim, h));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.wv, p + "attn_v", kv_dim, h));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.wo, p + "attn_output", h, q_dim));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.w_gate, p + "ffn_gate", ff, h));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.w_up, p + "ffn_up", ff, h));
    TANDEM_RETURN_IF_ERROR(CheckMatrix(lw.w_down, p + "ffn_down", h, ff));
    LayerVectors& v = model->vectors_[l];
    TANDEM_ASSIGN_OR_RETURN(v.attn_norm, LoadVector(lw.attn_norm, p + "attn_norm", h));
    TANDEM_ASSIGN_OR_RETURN(v.ffn_norm, LoadVector(lw.ffn_norm, p + "ffn_norm", h));
    if (c.architecture == Architecture::kQwen2) {
      TANDEM_ASSIGN_OR_RETURN(v.q_bias, LoadVector(lw.q_bias, p + "attn_q.bias", q_dim));
      TANDEM_ASSIGN_OR_RETURN(v.k_bias, LoadVector(lw.k_bias, p + "attn_k.bias", kv_dim));
      TANDEM_ASSIGN_OR_RETURN(v.v_bias, LoadVector(lw.v_bias, p + "attn_v.bias", kv_dim));
    }
    if (c.architecture == Architecture::kQwen3) {
      TANDEM_ASSIGN_OR_RETURN(v.q_norm, LoadVector(lw.q_norm, p + "attn_q_norm", c.head_dim));
      TANDEM_ASSIGN_OR_RETURN(v.k_norm, LoadVector(lw.k_norm, p + "attn_k_norm", c.head_dim));
    }
    for (const WeightMatrix* m :
         {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down}) {
      model->weight_bytes_ += m->bytes();
    }
  }
  model->weight_bytes_ += (w.lm_head.empty() ? w.token_embedding : w.lm_head).bytes();
  // The matrices products read, in the kernels' layout. A tied embedding is the LM head too; its
  // row lookups read the packed layout (DequantizeWeightRow reads every type).
  TransformerWeights& own = model->weights_;
  std::vector<WeightMatrix*> products = {own.lm_head.empty() ? &own.token_embedding : &own.lm_head};
  for (LayerWeights& lw : own.layers) {
    for (WeightMatrix* m : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down})
      products.push_back(m);
  }
  // Sources the transformer no longer reads: the vectors it copied and the matrices it packed.
  std::vector<std::pair<const uint8_t*, int64_t>> copied;
  copied.emplace_back(w.output_norm.row(0), w.output_norm.bytes());
  for (const LayerWeights& lw : w.layers) {
    for (const WeightMatrix* m : {&lw.attn_norm, &lw.ffn_norm, &lw.q_bias, &lw.k_bias, &lw.v_bias,
                                  &lw.q_norm, &lw.k_norm}) {
      if (!m->empty()) copied.emplace_back(m->row(0), m->bytes());
    }
  }
  for (WeightMatrix* m : products) {
    const std::pair<const uint8_t*, int64_t> source(m->row(0), m->bytes());
    TANDEM_ASSIGN_OR_RETURN(PackedWeights packed, PackWeights(*pool, *m, release_source));
    if (packed.storage == nullptr) continue;  // used as it is
    *m = packed.matrix;
    model->packed_.push_back(std::move(packed));
    copied.push_back(source);
  }
  // Packing drops each source's pages as it goes, but reading the next matrix maps the pages
  // around each of its faults again (the kernel's fault-around, up to 64 KiB), the tail of the
  // matrix before among them: 5-15 pages per matrix, 1.7 MiB for `small`. A second pass over
  // everything copied drops those too.
  if (release_source) {
    for (const auto& [data, bytes] : copied) release_source(data, bytes);
  }
  return model;
}

std::vector<std::pair<const void*, int64_t>> Transformer::WeightRanges() const {
  std::vector<std::pair<const void*, int64_t>> ranges;
  const auto add = [&](const void* data, int64_t bytes) {
    if (data == nullptr || bytes <= 0) return;
    for (const auto& range : ranges) {
      if (range.first == data) return;  // a tied embedding is the LM head too
    }
    ranges.emplace_back(data, bytes);
  };
  add(weights_.token_embedding.data, weights_.token_embedding.bytes());
  add(weights_.lm_head.data, weights_.lm_head.bytes());
  for (const LayerWeights& lw : weights_.layers) {
    for (const WeightMatrix* m : {&lw.wq, &lw.wk, &lw.wv, &lw.wo, &lw.w_gate, &lw.w_up, &lw.w_down})
      add(m->data, m->bytes());
  }
  const auto add_vector = [&](const std::vector<float>& v) {
    add(v.data(), static_cast<int64_t>(v.size() * sizeof(float)));
  };
  add_vector(output_norm_);
  for (const LayerVectors& v : vectors_) {
    for (const std::vector<float>* vec :
         {&v.attn_norm, &v.ffn_norm, &v.q_bias, &v.k_bias, &v.v_bias, &v.q_norm, &v.k_norm})
      add_vector(*vec);
  }
  return ranges;
}

Transformer::Transformer(const TransformerConfig& config, const TransformerWeights& weights,
                         ThreadPool* pool)
    : config_(config), weights_(weights), pool_(pool), vectors_(config.num_layers) {
  // RoPE inverse frequencies, with the Llama-3 long-context adjustment when configured.
  const int64_t half = config.head_dim / 2;
  inverse_frequencies_.resize(half);
  for (int64_t i = 0; i < half; ++i) {
    double frequency = 1.0 / std::pow(config.rope_theta, (2.0 * i) / config.head_dim);
    if (config.rope_linear_factor > 0) frequency /= config.rope_linear_factor;
    if (config.rope_llama3_scaling) {
      const double wavelength = 2 * std::numbers::pi / frequency;
      const double low_wavelength = config.rope_original_context / config.rope_low_freq_factor;
      const double high_wavelength = config.rope_original_context / config.rope_high_freq_factor;
      if (wavelength > low_wavelength) {
        frequency /= config.rope_factor;
      } else if (wavelength >= high_wavelength) {
        const double smooth =
            (config.rope_original_context / wavelength - config.rope_low_freq_factor) /
            (config.rope_high_freq_factor - config.rope_low_freq_factor);
        frequency = (1 - smooth) * frequency / config.rope_factor + smooth * frequency;
      }
    }
    inverse_frequencies_[i] = frequency;
  }
}

KvLayout Transformer::kv_layout(int block_size, KvType type) const {
  return {.num_layers = static_cast<int>(config_.num_layers),
          .num_kv_heads = static_cast<int>(config_.num_kv_heads),
          .head_dim = static_cast<int>(config_.head_dim),
          .block_size = block_size,
          .type = type};
}

int64_t Transformer::LogitRows(std::span<const SequenceChunk> batch) {
  int64_t rows = 0;
  for (const SequenceChunk& chunk : batch) {
    if (chunk.logits == SequenceChunk::Logits::kLast && !chunk.tokens.empty()) rows += 1;
    if (chunk.logits == SequenceChunk::Logits::kAll) rows += chunk.tokens.size();
  }
  return rows;
}

absl::Status Transformer::Forward(std::span<const SequenceChunk> batch, const BlockPool& kv,
                                  float* logits, const LayerDoneCallback& on_layer_done) {
  const TransformerConfig& c = config_;
  const int bs = kv.layout().block_size;
  const KvType kv_type = kv.layout().type;
  if (kv.layout().num_layers != c.num_layers || kv.layout().num_kv_heads != c.num_kv_heads ||
      kv.layout().head_dim != c.head_dim) {
    return absl::InvalidArgumentError("KV pool layout does not match the model");
  }
  int64_t total = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    const SequenceChunk& chunk = batch[i];
    const int64_t end = chunk.start + static_cast<int64_t>(chunk.tokens.size());
    if (chunk.start < 0 || end > c.max_context) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " reaches position ", end,
                                                     ", past the model's context of ",
                                                     c.max_context, " tokens"));
    }
    if (static_cast<int64_t>(chunk.blocks.size()) * bs < end) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has ", chunk.blocks.size(),
                                                     " KV blocks, too few for ", end,
                                                     " positions"));
    }
    for (int32_t token : chunk.tokens) {
      if (token < 0 || token >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", token, " is outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
    total += static_cast<int64_t>(chunk.tokens.size());
  }
  if (total == 0) return absl::OkStatus();

  const int64_t h = c.hidden_size, hd = c.head_dim, half = hd / 2;
  const int64_t q_dim = c.num_heads * hd, kv_dim = c.num_kv_heads * hd;
  const int64_t ff = c.intermediate_size;
  // Only the residual stream holds every row; the rest holds one slice.
  const int64_t slice = std::min(total, kSliceRows);
  x_.resize(total * h);
  normed_.resize(slice * std::max(h, q_dim));
  q_.resize(slice * q_dim);
  k_.resize(slice * kv_dim);
  v_.resize(slice * kv_dim);
  gate_.resize(slice * ff);
  up_.resize(slice * ff);
  down_.resize(slice * h);
  rope_cos_.resize(total * half);
  rope_sin_.resize(total * half);
  positions_.resize(total);
  row_chunk_.resize(total);

  int64_t row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    for (size_t t = 0; t < batch[i].tokens.size(); ++t, ++row) {
      positions_[row] = batch[i].start + static_cast<int64_t>(t);
      row_chunk_[row] = static_cast<int32_t>(i);
      DequantizeWeightRow(weights_.token_embedding, batch[i].tokens[t], x_.data() + row * h);
      for (int64_t d = 0; d < half; ++d) {
        const double angle = static_cast<double>(positions_[row]) * inverse_frequencies_[d];
        rope_cos_[row * half + d] = static_cast<float>(std::cos(angle));
        rope_sin_[row * half + d] = static_cast<float>(std::sin(angle));
      }
    }
  }

  // The per-row work between the matrix products (norms, biases, RoPE, the KV writes, residual
  // adds, SwiGLU) on the pool too: done by the calling thread alone, the other threads waited
  // through it, ~10 % of a 32-sequence step on 2 threads. A row's arithmetic is the same either
  // way; up to kRowGrain rows (single-sequence decode) run inline.
  constexpr int64_t kRowGrain = 4;
  const auto for_rows = [&](int64_t rows, const auto& fn) {
    pool_->ParallelFor(rows, kRowGrain, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) fn(r);
    });
  };

  auto rope = [&](float* vec, int64_t r) {
    const float* cs = rope_cos_.data() + r * half;
    const float* sn = rope_sin_.data() + r * half;
    if (c.rope_style == RopeStyle::kHalf) {
      for (int64_t d = 0; d < half; ++d) {
        const float a = vec[d], b = vec[d + half];
        vec[d] = a * cs[d] - b * sn[d];
        vec[d + half] = b * cs[d] + a * sn[d];
      }
    } else {
      for (int64_t d = 0; d < half; ++d) {
        const float a = vec[2 * d], b = vec[2 * d + 1];
        vec[2 * d] = a * cs[d] - b * sn[d];
        vec[2 * d + 1] = b * cs[d] + a * sn[d];
      }
    }
  };

  // Each layer runs over slices of rows so that only the residual stream is as large as the step
  // (a 512-token prefill), not its wide intermediates. A slice's attention reads the keys and
  // values of earlier slices, already in the cache; a row's arithmetic does not depend on its
  // slice.
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& lw = weights_.layers[l];
    const LayerVectors& lv = vectors_[l];
    for (int64_t first = 0; first < total; first += kSliceRows) {
      const int64_t rows = std::min(kSliceRows, total - first);
      float* x = x_.data() + first * h;
      for_rows(rows, [&](int64_t r) {
        RmsNorm(x + r * h, lv.attn_norm.data(), h, c.rms_norm_eps, normed_.data() + r * h);
      });
      const WeightMatrix* qkv[] = {&lw.wq, &lw.wk, &lw.wv};
      float* outs[] = {q_.data(), k_.data(), v_.data()};
      MatMulShared(*pool_, qkv, normed_.data(), rows, outs);
      for_rows(rows, [&](int64_t r) {
        const int64_t row = first + r;
        float* q = q_.data() + r * q_dim;
        float* k = k_.data() + r * kv_dim;
        float* v = v_.data() + r * kv_dim;
        if (!lv.q_bias.empty()) {
          for (int64_t i = 0; i < q_dim; ++i) q[i] += lv.q_bias[i];
          for (int64_t i = 0; i < kv_dim; ++i) k[i] += lv.k_bias[i];
          for (int64_t i = 0; i < kv_dim; ++i) v[i] += lv.v_bias[i];
        }
        for (int64_t head = 0; head < c.num_heads; ++head) {
          if (!lv.q_norm.empty())
            RmsNorm(q + head * hd, lv.q_norm.data(), hd, c.rms_norm_eps, q + head * hd);
          rope(q + head * hd, row);
        }
        for (int64_t head = 0; head < c.num_kv_heads; ++head) {
          if (!lv.k_norm.empty())
            RmsNorm(k + head * hd, lv.k_norm.data(), hd, c.rms_norm_eps, k + head * hd);
          rope(k + head * hd, row);
        }
        // Into the cache: the position's slot in its block, per kv head (keys transposed:
        // [dim][slot]). A BF16 cache rounds to nearest even; attention then reads the rounded
        // keys and values, its own position's included, however the step was batched.
        const SequenceChunk& chunk = batch[row_chunk_[row]];
        const BlockId block = chunk.blocks[positions_[row] / bs];
        const int64_t slot = positions_[row] % bs;
        for (int64_t head = 0; head < c.num_kv_heads; ++head) {
          const float* k_head = k + head * hd;
          const float* v_head = v + head * hd;
          if (kv_type == KvType::kBF16) {
            uint16_t* keys = kv.KeysBf16(block, l, head);
            uint16_t* values = kv.ValuesBf16(block, l, head) + slot * hd;
            for (int64_t d = 0; d < hd; ++d) keys[d * bs + slot] = F32ToBf16(k_head[d]);
            for (int64_t d = 0; d < hd; ++d) values[d] = F32ToBf16(v_head[d]);
          } else {
            float* keys = kv.KeysF32(block, l, head);
            for (int64_t d = 0; d < hd; ++d) keys[d * bs + slot] = k_head[d];
            std::memcpy(kv.ValuesF32(block, l, head) + slot * hd, v_head, hd * sizeof(float));
          }
        }
      });
      Attention(static_cast<int>(l), batch, kv, first, rows);
      MatMul(*pool_, lw.wo, q_.data(), rows, normed_.data());  // q_ now holds attention output
      for_rows(rows, [&](int64_t r) {
        for (int64_t i = r * h; i < (r + 1) * h; ++i) x[i] += normed_[i];
      });
    }
    if (on_layer_done) on_layer_done(static_cast<int>(l));

    for (int64_t first = 0; first < total; first += kSliceRows) {
      const int64_t rows = std::min(kSliceRows, total - first);
      float* x = x_.data() + first * h;
      for_rows(rows, [&](int64_t r) {
        RmsNorm(x + r * h, lv.ffn_norm.data(), h, c.rms_norm_eps, normed_.data() + r * h);
      });
      const WeightMatrix* gate_up[] = {&lw.w_gate, &lw.w_up};
      float* outs[] = {gate_.data(), up_.data()};
      MatMulShared(*pool_, gate_up, normed_.data(), rows, outs);
      for_rows(rows,
               [&](int64_t r) { SiluMulF32(gate_.data() + r * ff, up_.data() + r * ff, ff); });
      MatMul(*pool_, lw.w_down, gate_.data(), rows, down_.data());
      for_rows(rows, [&](int64_t r) {
        for (int64_t i = r * h; i < (r + 1) * h; ++i) x[i] += down_[i];
      });
    }
  }

  // Final norm on the rows that need logits, packed a slice at a time, then the LM head.
  const WeightMatrix& head = weights_.lm_head.empty() ? weights_.token_embedding : weights_.lm_head;
  int64_t packed = 0, out_rows = 0;
  const auto flush = [&] {
    MatMul(*pool_, head, normed_.data(), packed, logits + out_rows * c.vocab_size);
    out_rows += packed;
    packed = 0;
  };
  row = 0;
  for (const SequenceChunk& chunk : batch) {
    const int64_t n = static_cast<int64_t>(chunk.tokens.size());
    for (int64_t t = 0; t < n; ++t, ++row) {
      const bool want = chunk.logits == SequenceChunk::Logits::kAll ||
                        (chunk.logits == SequenceChunk::Logits::kLast && t == n - 1);
      if (!want) continue;
      RmsNorm(x_.data() + row * h, output_norm_.data(), h, c.rms_norm_eps,
              normed_.data() + packed * h);
      if (++packed == kSliceRows) flush();
    }
  }
  if (packed > 0) flush();
  return absl::OkStatus();
}

void Transformer::Attention(int layer, std::span<const SequenceChunk> batch, const BlockPool& kv,
                            int64_t first, int64_t rows) {
  const TransformerConfig& c = config_;
  const int bs = kv.layout().block_size;
  const int64_t hd = c.head_dim, q_dim = c.num_heads * hd;
  const int64_t group = c.num_heads / c.num_kv_heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const bool bf16 = kv.layout().type == KvType::kBF16;
  // One work item per (token, KV head): the group of query heads that share the KV head walks
  // the sequence's blocks together, so each key and value is read and widened once per group:
  // scores for a whole block at once from the transposed keys, then each head's softmax, then
  // values block by block. Work items in chunks of at least ~64K multiply-adds: a single
  // sequence's decode step (tens of microseconds of attention) then runs on the calling thread
  // without a hand-off.
  int64_t work = 0;
  for (int64_t r = first; r < first + rows; ++r) work += (positions_[r] + 1) * hd * group;
  const int64_t per_item = std::max<int64_t>(1, work / (rows * c.num_kv_heads));
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / per_item);
  const int64_t head_bytes = kv.layout().head_block_bytes();
  pool_->ParallelFor(rows * c.num_kv_heads, grain, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t r = item / c.num_kv_heads, kv_head = item % c.num_kv_heads;
      const SequenceChunk& chunk = batch[row_chunk_[first + r]];
      const int64_t length = positions_[first + r] + 1;  // causal: positions 0 .. own
      // Each head's scores on a row of their own, whole cache lines apart.
      const int64_t scores_stride = (length + 15) / 16 * 16;
      // The output replaces the group's queries in place: a work item reads only its own
      // queries, and only before it writes.
      float* out = q_.data() + r * q_dim + kv_head * group * hd;
      scores.resize(group * scores_stride);
      const int64_t num_blocks = (length + bs - 1) / bs;
      // A sequence's blocks lie anywhere in the pool, where no hardware prefetcher follows, and
      // a batched step reads more KV than the caches hold. The item reads its keys block by
      // block, then its values: each is requested kAhead blocks of that order before it is
      // used, so several are in flight while one is worked on.
      // (1 to 6 blocks ahead, into L1 or L2, measured the same within this host's noise.)
      constexpr int64_t kAhead = 2;
      const auto request = [&](int64_t j) {
        if (j < num_blocks) {
          PrefetchBytes(kv.Keys(chunk.blocks[j], layer, kv_head), head_bytes);
        } else if (j < 2 * num_blocks) {
          PrefetchBytes(kv.Values(chunk.blocks[j - num_blocks], layer, kv_head), head_bytes);
        }
      };
      for (int64_t j = 0; j < kAhead; ++j) request(j);
      for (int64_t i = 0; i < num_blocks; ++i) {
        const int64_t start = i * bs;
        const int64_t slots = std::min<int64_t>(bs, length - start);
        const BlockId block = chunk.blocks[i];
        request(i + kAhead);
        if (bf16) {
          BlockScoresBf16(kv.KeysBf16(block, layer, kv_head), bs, slots, out, group, hd,
                          scores.data() + start, scores_stride);
        } else {
          BlockScoresF32(kv.KeysF32(block, layer, kv_head), bs, slots, out, group, hd,
                         scores.data() + start, scores_stride);
        }
      }
      for (int64_t h = 0; h < group; ++h)
        SoftmaxF32(scores.data() + h * scores_stride, length, scale);
      std::fill(out, out + group * hd, 0.0f);
      for (int64_t i = 0; i < num_blocks; ++i) {
        const int64_t start = i * bs;
        const int64_t slots = std::min<int64_t>(bs, length - start);
        const BlockId block = chunk.blocks[i];
        request(num_blocks + i + kAhead);
        if (bf16) {
          BlockAccumulateBf16(kv.ValuesBf16(block, layer, kv_head), slots, scores.data() + start,
                              scores_stride, group, hd, out);
        } else {
          BlockAccumulateF32(kv.ValuesF32(block, layer, kv_head), slots, scores.data() + start,
                             scores_stride, group, hd, out);
        }
      }
    }
  });
}

}  // namespace tandem::engine
