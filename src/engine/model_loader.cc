#include "engine/model_loader.h"

#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "engine/random_model.h"
#include "model/dtype.h"
#include "model/model_config.h"
#include "model/model_writer.h"
#include "model/vocab.h"

namespace tandem::engine {
namespace {

absl::StatusOr<LoadedModel> LoadRandom(const std::string& reference) {
  std::vector<std::string> parts = absl::StrSplit(reference, ':');
  if (parts.size() < 2 || parts.size() > 4) {
    return absl::InvalidArgumentError(
        absl::StrCat("model reference '", reference,
                     "' is malformed; expected random:<shape>[:<dtype>[:<seed>]]"));
  }
  TANDEM_ASSIGN_OR_RETURN(model::ModelConfig preset, model::PresetConfig(parts[1]));
  const TransformerConfig config = EngineConfig(preset);
  WeightType type = WeightType::kBF16;
  if (parts.size() >= 3) {
    TANDEM_ASSIGN_OR_RETURN(type, ParseWeightType(parts[2]));
  }
  uint64_t seed = 1;
  if (parts.size() == 4 && !absl::SimpleAtoi(parts[3], &seed)) {
    return absl::InvalidArgumentError(
        absl::StrCat("model reference '", reference, "': seed '", parts[3], "' is not a number"));
  }
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<RandomModel> random,
                          MakeRandomModel(config, type, seed, !preset.tie_word_embeddings));
  std::shared_ptr<RandomModel> owned = std::move(random);
  LoadedModel loaded;
  loaded.model = {.name = absl::StrCat("random-", parts[1]),
                  .config = owned->config,
                  .weights = owned->weights,
                  .keepalive = owned};
  TANDEM_ASSIGN_OR_RETURN(model::VocabSpec vocab,
                          model::DemoVocab(static_cast<int32_t>(config.vocab_size)));
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tokenizer,
                          model::Tokenizer::FromVocab(vocab));
  loaded.chat_template = tokenizer->chat_template();
  loaded.tokenizer = std::move(tokenizer);
  return loaded;
}

absl::StatusOr<WeightType> EngineType(model::DType type, const std::string& tensor,
                                      const std::string& path) {
  switch (type) {
    case model::DType::kF32:
      return WeightType::kF32;
    case model::DType::kF16:
      return WeightType::kF16;
    case model::DType::kBF16:
      return WeightType::kBF16;
    case model::DType::kQ8_0:
      return WeightType::kQ8_0;
    case model::DType::kQ4_K:
      return WeightType::kQ4_K;
    case model::DType::kQ6_K:
      return WeightType::kQ6_K;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "model file '", path, "': tensor '", tensor, "' has type ", model::DTypeName(type),
          "; the engine computes with F32, F16, BF16, Q8_0, Q4_K and Q6_K"));
  }
}

}  // namespace

TransformerConfig EngineConfig(const model::ModelConfig& mc) {
  TransformerConfig c;
  switch (mc.architecture) {
    case model::Architecture::kLlama:
      c.architecture = Architecture::kLlama;
      break;
    case model::Architecture::kQwen2:
      c.architecture = Architecture::kQwen2;
      break;
    case model::Architecture::kQwen3:
      c.architecture = Architecture::kQwen3;
      break;
  }
  c.vocab_size = mc.vocab_size;
  c.hidden_size = mc.hidden_size;
  c.intermediate_size = mc.intermediate_size;
  c.num_layers = mc.num_layers;
  c.num_heads = mc.num_heads;
  c.num_kv_heads = mc.num_kv_heads;
  c.head_dim = mc.head_dim;
  c.rms_norm_eps = mc.rms_norm_eps;
  c.rope_theta = mc.rope_theta;
  c.rope_style =
      mc.rope_style == model::RopeStyle::kInterleaved ? RopeStyle::kInterleaved : RopeStyle::kHalf;
  if (mc.rope_scaling.type == model::RopeScaling::Type::kLlama3) {
    c.rope_llama3_scaling = true;
    c.rope_factor = mc.rope_scaling.factor;
    c.rope_low_freq_factor = mc.rope_scaling.low_freq_factor;
    c.rope_high_freq_factor = mc.rope_scaling.high_freq_factor;
    c.rope_original_context = mc.rope_scaling.original_max_position_embeddings;
  } else if (mc.rope_scaling.type == model::RopeScaling::Type::kLinear) {
    c.rope_linear_factor = mc.rope_scaling.factor;
  }
  c.max_context = mc.max_position_embeddings;
  return c;
}

absl::StatusOr<EngineModel> EngineModelFromModel(std::shared_ptr<const model::Model> model) {
  const model::ModelConfig& mc = model->config();
  const std::string path = model->path();
  auto matrix = [&](const std::string& name, bool optional) -> absl::StatusOr<WeightMatrix> {
    const model::TensorView* tensor = model->FindTensor(name);
    if (tensor == nullptr) {
      if (optional) return WeightMatrix{};
      return absl::NotFoundError(
          absl::StrCat("model file '", path, "': tensor '", name, "' is missing"));
    }
    TANDEM_ASSIGN_OR_RETURN(WeightType type, EngineType(tensor->dtype, name, path));
    if (tensor->cols() % WeightBlockElements(type) != 0) {
      return absl::InvalidArgumentError(absl::StrCat("model file '", path, "': tensor '", name,
                                                     "' rows of ", tensor->cols(),
                                                     " elements do not fill whole blocks"));
    }
    return WeightMatrix{
        .data = tensor->data, .type = type, .rows = tensor->rows(), .cols = tensor->cols()};
  };
  EngineModel out;
  out.name = model::DefaultServedModelName(path);
  out.config = EngineConfig(mc);
  const TransformerConfig& c = out.config;

  TransformerWeights& w = out.weights;
  TANDEM_ASSIGN_OR_RETURN(w.token_embedding, matrix("token_embd.weight", false));
  TANDEM_ASSIGN_OR_RETURN(w.output_norm, matrix("output_norm.weight", false));
  TANDEM_ASSIGN_OR_RETURN(w.lm_head, matrix("output.weight", /*optional=*/true));
  w.layers.resize(c.num_layers);
  for (int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& l = w.layers[i];
    const std::string p = absl::StrCat("blk.", i, ".");
    TANDEM_ASSIGN_OR_RETURN(l.attn_norm, matrix(p + "attn_norm.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.wq, matrix(p + "attn_q.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.wk, matrix(p + "attn_k.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.wv, matrix(p + "attn_v.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.wo, matrix(p + "attn_output.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.q_bias, matrix(p + "attn_q.bias", !mc.attention_bias));
    TANDEM_ASSIGN_OR_RETURN(l.k_bias, matrix(p + "attn_k.bias", !mc.attention_bias));
    TANDEM_ASSIGN_OR_RETURN(l.v_bias, matrix(p + "attn_v.bias", !mc.attention_bias));
    TANDEM_ASSIGN_OR_RETURN(l.q_norm, matrix(p + "attn_q_norm.weight", !mc.qk_norm));
    TANDEM_ASSIGN_OR_RETURN(l.k_norm, matrix(p + "attn_k_norm.weight", !mc.qk_norm));
    TANDEM_ASSIGN_OR_RETURN(l.ffn_norm, matrix(p + "ffn_norm.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.w_gate, matrix(p + "ffn_gate.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.w_up, matrix(p + "ffn_up.weight", false));
    TANDEM_ASSIGN_OR_RETURN(l.w_down, matrix(p + "ffn_down.weight", false));
  }
  out.release_weight_pages = [model](const uint8_t* first, int64_t bytes) {
    model->ReleasePages(first, static_cast<uint64_t>(bytes));
  };
  out.keepalive = std::move(model);
  return out;
}

absl::StatusOr<LoadedModel> LoadEngineModel(const std::string& reference) {
  if (reference.rfind("random:", 0) == 0) return LoadRandom(reference);
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::Model> loaded, model::LoadModel(reference));
  std::shared_ptr<const model::Model> model = std::move(loaded);
  LoadedModel result;
  result.chat_template = model->chat_template();
  if (model->vocab().has_value() || !model->tokenizer_json().empty()) {
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::Tokenizer> tokenizer, model->MakeTokenizer());
    if (result.chat_template.empty()) result.chat_template = tokenizer->chat_template();
    result.tokenizer = std::move(tokenizer);
  }
  TANDEM_ASSIGN_OR_RETURN(result.model, EngineModelFromModel(std::move(model)));
  return result;
}

}  // namespace tandem::engine
