#include "engine/random_model.h"

#include <cmath>
#include <string>

#include "absl/strings/str_cat.h"

#include "core/status.h"
#include "engine/sampling.h"

namespace tandem::engine {
namespace {

class Builder {
 public:
  Builder(RandomModel* model, uint64_t seed) : model_(model), random_(seed) {}

  absl::StatusOr<WeightMatrix> Matrix(WeightType type, int64_t rows, int64_t cols, double scale,
                                      double offset = 0) {
    std::vector<uint8_t>& bytes = model_->storage.emplace_back(rows * WeightRowBytes(type, cols));
    std::vector<float> row(cols);
    for (int64_t r = 0; r < rows; ++r) {
      for (float& value : row)
        value = static_cast<float>(offset + scale * (2 * random_.Uniform() - 1));
      TANDEM_RETURN_IF_ERROR(
          QuantizeRow(type, row.data(), cols, bytes.data() + r * WeightRowBytes(type, cols)));
    }
    return WeightMatrix{.data = bytes.data(), .type = type, .rows = rows, .cols = cols};
  }

 private:
  RandomModel* model_;
  Random random_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RandomModel>> MakeRandomModel(const TransformerConfig& config,
                                                             WeightType type, uint64_t seed,
                                                             bool untied_head) {
  auto model = std::make_unique<RandomModel>();
  model->config = config;
  // Matrix entries uniform in [-s, s] with s = sqrt(3 / fan_in): unit variance outputs.
  const int64_t h = config.hidden_size, hd = config.head_dim, ff = config.intermediate_size;
  const int64_t q_dim = config.num_heads * hd, kv_dim = config.num_kv_heads * hd;
  auto s = [](int64_t fan_in) { return std::sqrt(3.0 / fan_in); };
  Builder b(model.get(), seed);
  TransformerWeights& w = model->weights;
  TANDEM_ASSIGN_OR_RETURN(w.token_embedding, b.Matrix(type, config.vocab_size, h, 1.0));
  if (untied_head) {
    TANDEM_ASSIGN_OR_RETURN(w.lm_head, b.Matrix(type, config.vocab_size, h, s(h)));
  }
  TANDEM_ASSIGN_OR_RETURN(w.output_norm, b.Matrix(WeightType::kF32, 1, h, 0.1, 1.0));
  w.layers.resize(config.num_layers);
  for (LayerWeights& l : w.layers) {
    TANDEM_ASSIGN_OR_RETURN(l.attn_norm, b.Matrix(WeightType::kF32, 1, h, 0.1, 1.0));
    TANDEM_ASSIGN_OR_RETURN(l.wq, b.Matrix(type, q_dim, h, s(h)));
    TANDEM_ASSIGN_OR_RETURN(l.wk, b.Matrix(type, kv_dim, h, s(h)));
    TANDEM_ASSIGN_OR_RETURN(l.wv, b.Matrix(type, kv_dim, h, s(h)));
    TANDEM_ASSIGN_OR_RETURN(l.wo, b.Matrix(type, h, q_dim, s(q_dim) * 0.5));
    if (config.architecture == Architecture::kQwen2) {
      TANDEM_ASSIGN_OR_RETURN(l.q_bias, b.Matrix(WeightType::kF32, 1, q_dim, 0.2));
      TANDEM_ASSIGN_OR_RETURN(l.k_bias, b.Matrix(WeightType::kF32, 1, kv_dim, 0.2));
      TANDEM_ASSIGN_OR_RETURN(l.v_bias, b.Matrix(WeightType::kF32, 1, kv_dim, 0.2));
    }
    if (config.architecture == Architecture::kQwen3) {
      TANDEM_ASSIGN_OR_RETURN(l.q_norm, b.Matrix(WeightType::kF32, 1, hd, 0.1, 1.0));
      TANDEM_ASSIGN_OR_RETURN(l.k_norm, b.Matrix(WeightType::kF32, 1, hd, 0.1, 1.0));
    }
    TANDEM_ASSIGN_OR_RETURN(l.ffn_norm, b.Matrix(WeightType::kF32, 1, h, 0.1, 1.0));
    TANDEM_ASSIGN_OR_RETURN(l.w_gate, b.Matrix(type, ff, h, s(h)));
    TANDEM_ASSIGN_OR_RETURN(l.w_up, b.Matrix(type, ff, h, s(h)));
    TANDEM_ASSIGN_OR_RETURN(l.w_down, b.Matrix(type, h, ff, s(ff) * 0.5));
  }
  return model;
}

}  // namespace tandem::engine
