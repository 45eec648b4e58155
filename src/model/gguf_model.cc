#include "model/gguf_model.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tandem::model {
namespace {

class MetadataReader {
 public:
  MetadataReader(const GgufFile& gguf, std::string_view source) : gguf_(gguf), source_(source) {}

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": metadata key '", key, "': ", what));
  }

  // A positive integer. Missing keys are an error when `required`.
  absl::Status Int(const std::string& key, int64_t* out, bool required) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) {
      return required ? Error(key, "missing (expected a positive integer)") : absl::OkStatus();
    }
    if (!value->IsInteger() || value->integer <= 0 || value->integer > (int64_t{1} << 40)) {
      return Error(key, absl::StrCat("expected a positive integer, got ", GgufTypeName(value->type),
                                     " ", value->DebugString()));
    }
    *out = value->integer;
    return absl::OkStatus();
  }

  absl::Status Number(const std::string& key, double* out, bool required) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) {
      return required ? Error(key, "missing (expected a number)") : absl::OkStatus();
    }
    std::optional<double> number = value->AsDouble();
    if (!number || !std::isfinite(*number) || *number <= 0) {
      return Error(key, absl::StrCat("expected a positive number, got ", GgufTypeName(value->type),
                                     " ", value->DebugString()));
    }
    *out = *number;
    return absl::OkStatus();
  }

  absl::Status String(const std::string& key, std::string* out, bool required) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) {
      return required ? Error(key, "missing (expected a string)") : absl::OkStatus();
    }
    if (value->type != GgufType::kString) {
      return Error(key, absl::StrCat("expected a string, got ", GgufTypeName(value->type)));
    }
    *out = value->string;
    return absl::OkStatus();
  }

  absl::Status TokenId(const std::string& key, int32_t* out) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->IsInteger() || value->integer < 0 ||
        value->integer > std::numeric_limits<int32_t>::max()) {
      return Error(key, absl::StrCat("expected a token id, got ", value->DebugString()));
    }
    *out = static_cast<int32_t>(value->integer);
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (value->type != GgufType::kBool) {
      return Error(key, absl::StrCat("expected a bool, got ", GgufTypeName(value->type)));
    }
    *out = value->boolean;
    return absl::OkStatus();
  }

  // An array whose elements all have type `element`; nullptr (and OK) when absent.
  absl::StatusOr<const GgufValue*> Array(const std::string& key, GgufType element,
                                         bool required) const {
    const GgufValue* value = gguf_.Find(key);
    if (value == nullptr) {
      if (required) {
        return Error(key,
                     absl::StrCat("missing (expected an array of ", GgufTypeName(element), ")"));
      }
      return nullptr;
    }
    if (value->type != GgufType::kArray || value->element_type != element) {
      return Error(
          key, absl::StrCat("expected an array of ", GgufTypeName(element), ", got ",
                            value->type == GgufType::kArray
                                ? absl::StrCat("an array of ", GgufTypeName(value->element_type))
                                : std::string(GgufTypeName(value->type))));
    }
    return value;
  }

 private:
  const GgufFile& gguf_;
  std::string source_;
};

}  // namespace

std::vector<float> Llama3RopeFactors(const ModelConfig& config) {
  const RopeScaling& scaling = config.rope_scaling;
  const double original = static_cast<double>(scaling.original_max_position_embeddings);
  const double low_freq_wavelength = original / scaling.low_freq_factor;
  const double high_freq_wavelength = original / scaling.high_freq_factor;
  std::vector<float> factors;
  for (int64_t i = 0; i < config.head_dim / 2; ++i) {
    const double frequency =
        1.0 / std::pow(config.rope_theta, static_cast<double>(2 * i) / config.head_dim);
    const double wavelength = 2 * M_PI / frequency;
    double factor;
    if (wavelength < high_freq_wavelength) {
      factor = 1.0;
    } else if (wavelength > low_freq_wavelength) {
      factor = scaling.factor;
    } else {
      const double smooth = (original / wavelength - scaling.low_freq_factor) /
                            (scaling.high_freq_factor - scaling.low_freq_factor);
      factor = 1.0 / ((1 - smooth) / scaling.factor + smooth);
    }
    factors.push_back(static_cast<float>(factor));
  }
  return factors;
}

absl::StatusOr<ModelConfig> ConfigFromGguf(const GgufFile& gguf, std::string_view source_name,
                                           const std::vector<float>* rope_freqs) {
  const std::string source(source_name);
  MetadataReader reader(gguf, source);
  std::string arch_name;
  absl::Status status = reader.String("general.architecture", &arch_name, true);
  if (!status.ok()) return status;
  absl::StatusOr<Architecture> architecture = ParseArchitecture(arch_name);
  if (!architecture.ok()) {
    return reader.Error("general.architecture", architecture.status().message());
  }
  ModelConfig config;
  config.architecture = *architecture;
  ApplyArchitectureDefaults(config);
  // llama.cpp's converter permutes Q/K rows of llama models for its interleaved RoPE; Qwen
  // models keep the Hugging Face order (llama.cpp's NEOX mode).
  config.rope_style =
      config.architecture == Architecture::kLlama ? RopeStyle::kInterleaved : RopeStyle::kHalf;
  if (arch_name == "mistral") arch_name = "llama";
  (void)reader.String("general.name", &config.name, false);
  const std::string p = arch_name + ".";
  auto check = [&](absl::Status s) {
    if (status.ok() && !s.ok()) status = s;
  };
  check(reader.Int(p + "embedding_length", &config.hidden_size, true));
  check(reader.Int(p + "block_count", &config.num_layers, true));
  check(reader.Int(p + "feed_forward_length", &config.intermediate_size, true));
  check(reader.Int(p + "attention.head_count", &config.num_heads, true));
  config.num_kv_heads = config.num_heads;
  check(reader.Int(p + "attention.head_count_kv", &config.num_kv_heads, false));
  check(reader.Int(p + "context_length", &config.max_position_embeddings, true));
  check(reader.Number(p + "attention.layer_norm_rms_epsilon", &config.rms_norm_eps, true));
  check(reader.Number(p + "rope.freq_base", &config.rope_theta, false));
  if (!status.ok()) return status;
  config.head_dim = config.hidden_size / config.num_heads;
  check(reader.Int(p + "attention.key_length", &config.head_dim, false));
  int64_t value_length = config.head_dim;
  check(reader.Int(p + "attention.value_length", &value_length, false));
  int64_t rope_dimensions = config.head_dim;
  check(reader.Int(p + "rope.dimension_count", &rope_dimensions, false));
  if (!status.ok()) return status;
  if (value_length != config.head_dim) {
    return reader.Error(p + "attention.value_length",
                        absl::StrCat("expected it to equal the key length ", config.head_dim,
                                     ", got ", value_length));
  }
  if (rope_dimensions != config.head_dim) {
    return reader.Error(p + "rope.dimension_count",
                        absl::StrCat("partial RoPE is not supported: expected ", config.head_dim,
                                     " (the head size), got ", rope_dimensions));
  }

  // Vocabulary size: explicit key, else the embedding's rows, else the token list.
  if (const GgufTensorInfo* embedding = gguf.FindTensor("token_embd.weight");
      embedding != nullptr && embedding->shape.size() == 2) {
    config.vocab_size = embedding->shape[1];
  } else if (const GgufValue* tokens = gguf.Find("tokenizer.ggml.tokens");
             tokens != nullptr && tokens->type == GgufType::kArray) {
    config.vocab_size = static_cast<int64_t>(tokens->array.size());
  }
  check(reader.Int(p + "vocab_size", &config.vocab_size, false));
  config.tie_word_embeddings = gguf.FindTensor("output.weight") == nullptr;
  config.attention_bias = gguf.FindTensor("blk.0.attn_q.bias") != nullptr ||
                          config.architecture == Architecture::kQwen2;
  check(reader.TokenId("tokenizer.ggml.bos_token_id", &config.bos_id));
  check(reader.TokenId("tokenizer.ggml.eos_token_id", &config.eos_id));
  if (!status.ok()) return status;

  std::string scaling_type;
  check(reader.String(p + "rope.scaling.type", &scaling_type, false));
  if (!status.ok()) return status;
  RopeScaling& scaling = config.rope_scaling;
  if (scaling_type == "linear") {
    scaling.type = RopeScaling::Type::kLinear;
    check(reader.Number(p + "rope.scaling.factor", &scaling.factor, true));
  } else if (scaling_type == "llama3") {
    scaling.type = RopeScaling::Type::kLlama3;
    check(reader.Number(p + "rope.scaling.factor", &scaling.factor, true));
    check(reader.Number(p + "rope.scaling.low_freq_factor", &scaling.low_freq_factor, true));
    check(reader.Number(p + "rope.scaling.high_freq_factor", &scaling.high_freq_factor, true));
    check(reader.Int(p + "rope.scaling.original_context_length",
                     &scaling.original_max_position_embeddings, true));
  } else if (!scaling_type.empty() && scaling_type != "none") {
    return reader.Error(p + "rope.scaling.type",
                        absl::StrCat("rope scaling '", scaling_type,
                                     "' is not supported (supported: none, linear, llama3)"));
  } else if (rope_freqs != nullptr) {
    // llama.cpp's converter stores Llama-3.1 scaling only as per-frequency factors; accept them
    // when they are those of the published Llama-3.1 parameters.
    scaling = RopeScaling{.type = RopeScaling::Type::kLlama3,
                          .factor = 8.0,
                          .low_freq_factor = 1.0,
                          .high_freq_factor = 4.0,
                          .original_max_position_embeddings = 8192};
    const std::vector<float> expected = Llama3RopeFactors(config);
    bool matches = rope_freqs->size() == expected.size();
    for (size_t i = 0; matches && i < expected.size(); ++i) {
      matches = std::fabs((*rope_freqs)[i] - expected[i]) <= 1e-3f * expected[i];
    }
    if (!matches) {
      return absl::InvalidArgumentError(absl::StrCat(
          source,
          ": tensor 'rope_freqs.weight': its RoPE factors are not those of Llama-3.1 "
          "scaling (factor 8, low 1, high 4, original context 8192); other per-frequency "
          "factors are not supported"));
    }
  }
  if (!status.ok()) return status;
  if (config.num_heads % config.num_kv_heads != 0) {
    return reader.Error(p + "attention.head_count_kv",
                        absl::StrCat("expected a divisor of the head count ", config.num_heads,
                                     ", got ", config.num_kv_heads));
  }
  status = ValidateConfig(config, source);
  if (!status.ok()) return status;
  return config;
}

absl::StatusOr<std::optional<VocabSpec>> VocabFromGguf(const GgufFile& gguf,
                                                       std::string_view source_name) {
  const std::string source(source_name);
  MetadataReader reader(gguf, source);
  std::string model;
  absl::Status status = reader.String("tokenizer.ggml.model", &model, false);
  if (!status.ok()) return status;
  if (model.empty() || model == "none" || model == "no_vocab") return std::optional<VocabSpec>();
  VocabSpec vocab;
  if (model == "gpt2") {
    vocab.kind = VocabSpec::Kind::kByteLevelBpe;
  } else if (model == "llama") {
    vocab.kind = VocabSpec::Kind::kSentencePiece;
  } else {
    return reader.Error(
        "tokenizer.ggml.model",
        absl::StrCat("tokenizer '", model, "' is not supported (supported: gpt2, llama)"));
  }
  absl::StatusOr<const GgufValue*> tokens =
      reader.Array("tokenizer.ggml.tokens", GgufType::kString, true);
  if (!tokens.ok()) return tokens.status();
  const size_t count = (*tokens)->array.size();
  if (count == 0) return reader.Error("tokenizer.ggml.tokens", "expected at least one token");
  vocab.tokens.reserve(count);
  for (const GgufValue& token : (*tokens)->array) vocab.tokens.push_back(token.string);

  absl::StatusOr<const GgufValue*> scores =
      reader.Array("tokenizer.ggml.scores", GgufType::kFloat32, false);
  if (!scores.ok()) return scores.status();
  if (*scores != nullptr) {
    if ((*scores)->array.size() != count) {
      return reader.Error("tokenizer.ggml.scores",
                          absl::StrCat("expected ", count, " scores (one per token), got ",
                                       (*scores)->array.size()));
    }
    for (const GgufValue& score : (*scores)->array) {
      vocab.scores.push_back(static_cast<float>(score.number));
    }
  } else if (vocab.kind == VocabSpec::Kind::kSentencePiece) {
    return reader.Error("tokenizer.ggml.scores",
                        "missing (SentencePiece vocabularies need scores)");
  }
  absl::StatusOr<const GgufValue*> types =
      reader.Array("tokenizer.ggml.token_type", GgufType::kInt32, false);
  if (!types.ok()) return types.status();
  if (*types != nullptr) {
    if ((*types)->array.size() != count) {
      return reader.Error("tokenizer.ggml.token_type",
                          absl::StrCat("expected ", count, " token types (one per token), got ",
                                       (*types)->array.size()));
    }
    for (const GgufValue& type : (*types)->array) {
      if (type.integer < 0 || type.integer > 6) {
        return reader.Error("tokenizer.ggml.token_type",
                            absl::StrCat("token type ", type.integer, " is not 0-6"));
      }
      vocab.token_types.push_back(static_cast<int32_t>(type.integer));
    }
  } else {
    vocab.token_types.assign(count, 1);
  }
  absl::StatusOr<const GgufValue*> merges =
      reader.Array("tokenizer.ggml.merges", GgufType::kString, false);
  if (!merges.ok()) return merges.status();
  if (*merges != nullptr) {
    for (const GgufValue& merge : (*merges)->array) vocab.merges.push_back(merge.string);
  } else if (vocab.kind == VocabSpec::Kind::kByteLevelBpe) {
    return reader.Error("tokenizer.ggml.merges",
                        "missing (byte-level BPE vocabularies need merges)");
  }
  auto check = [&](absl::Status s) {
    if (status.ok() && !s.ok()) status = s;
  };
  check(reader.String("tokenizer.ggml.pre", &vocab.pre_tokenizer, false));
  check(reader.TokenId("tokenizer.ggml.bos_token_id", &vocab.bos_id));
  check(reader.TokenId("tokenizer.ggml.eos_token_id", &vocab.eos_id));
  check(reader.TokenId("tokenizer.ggml.padding_token_id", &vocab.pad_id));
  check(reader.TokenId("tokenizer.ggml.unknown_token_id", &vocab.unk_id));
  vocab.add_bos = vocab.kind == VocabSpec::Kind::kSentencePiece;
  check(reader.Bool("tokenizer.ggml.add_bos_token", &vocab.add_bos));
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    int32_t id = -1;
    check(reader.TokenId(key, &id));
    if (id >= 0 && id != vocab.eos_id) vocab.extra_eos_ids.push_back(id);
  }
  check(reader.String("tokenizer.chat_template", &vocab.chat_template, false));
  if (!status.ok()) return status;
  for (const auto& [key, id] : {std::pair<const char*, int32_t>{"bos_token_id", vocab.bos_id},
                                {"eos_token_id", vocab.eos_id},
                                {"padding_token_id", vocab.pad_id},
                                {"unknown_token_id", vocab.unk_id}}) {
    if (id >= static_cast<int64_t>(count)) {
      return reader.Error(
          absl::StrCat("tokenizer.ggml.", key),
          absl::StrCat("token id ", id, " is outside the ", count, "-token vocabulary"));
    }
  }
  for (int32_t id : vocab.extra_eos_ids) {
    if (id >= static_cast<int64_t>(count)) {
      return reader.Error("tokenizer.ggml.eot_token_id",
                          absl::StrCat("token id ", id, " is outside the vocabulary"));
    }
  }
  return std::optional<VocabSpec>(std::move(vocab));
}

void ConfigToGguf(const ModelConfig& config, GgufWriter& writer) {
  const std::string arch(ArchitectureName(config.architecture));
  const std::string p = arch + ".";
  writer.SetString("general.architecture", arch);
  if (!config.name.empty()) writer.SetString("general.name", config.name);
  writer.SetUint32(p + "vocab_size", static_cast<uint32_t>(config.vocab_size));
  writer.SetUint32(p + "context_length", static_cast<uint32_t>(config.max_position_embeddings));
  writer.SetUint32(p + "embedding_length", static_cast<uint32_t>(config.hidden_size));
  writer.SetUint32(p + "block_count", static_cast<uint32_t>(config.num_layers));
  writer.SetUint32(p + "feed_forward_length", static_cast<uint32_t>(config.intermediate_size));
  writer.SetUint32(p + "attention.head_count", static_cast<uint32_t>(config.num_heads));
  writer.SetUint32(p + "attention.head_count_kv", static_cast<uint32_t>(config.num_kv_heads));
  writer.SetUint32(p + "attention.key_length", static_cast<uint32_t>(config.head_dim));
  writer.SetUint32(p + "attention.value_length", static_cast<uint32_t>(config.head_dim));
  writer.SetUint32(p + "rope.dimension_count", static_cast<uint32_t>(config.head_dim));
  writer.SetFloat32(p + "rope.freq_base", static_cast<float>(config.rope_theta));
  writer.SetFloat32(p + "attention.layer_norm_rms_epsilon",
                    static_cast<float>(config.rms_norm_eps));
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == RopeScaling::Type::kLinear) {
    writer.SetString(p + "rope.scaling.type", "linear");
    writer.SetFloat32(p + "rope.scaling.factor", static_cast<float>(scaling.factor));
  } else if (scaling.type == RopeScaling::Type::kLlama3) {
    writer.SetString(p + "rope.scaling.type", "llama3");
    writer.SetFloat32(p + "rope.scaling.factor", static_cast<float>(scaling.factor));
    writer.SetFloat32(p + "rope.scaling.low_freq_factor",
                      static_cast<float>(scaling.low_freq_factor));
    writer.SetFloat32(p + "rope.scaling.high_freq_factor",
                      static_cast<float>(scaling.high_freq_factor));
    writer.SetUint32(p + "rope.scaling.original_context_length",
                     static_cast<uint32_t>(scaling.original_max_position_embeddings));
  }
}

void VocabToGguf(const VocabSpec& vocab, GgufWriter& writer) {
  const bool sentencepiece = vocab.kind == VocabSpec::Kind::kSentencePiece;
  writer.SetString("tokenizer.ggml.model", sentencepiece ? "llama" : "gpt2");
  if (!vocab.pre_tokenizer.empty()) writer.SetString("tokenizer.ggml.pre", vocab.pre_tokenizer);
  std::vector<GgufValue> tokens, types, scores, merges;
  tokens.reserve(vocab.tokens.size());
  for (const std::string& token : vocab.tokens) tokens.push_back(GgufValue::String(token));
  writer.Set("tokenizer.ggml.tokens", GgufValue::Array(GgufType::kString, std::move(tokens)));
  if (!vocab.scores.empty()) {
    for (float score : vocab.scores) scores.push_back(GgufValue::Float32(score));
    writer.Set("tokenizer.ggml.scores", GgufValue::Array(GgufType::kFloat32, std::move(scores)));
  }
  for (size_t i = 0; i < vocab.tokens.size(); ++i) {
    types.push_back(GgufValue::Int32(i < vocab.token_types.size() ? vocab.token_types[i] : 1));
  }
  writer.Set("tokenizer.ggml.token_type", GgufValue::Array(GgufType::kInt32, std::move(types)));
  if (!sentencepiece) {
    for (const std::string& merge : vocab.merges) merges.push_back(GgufValue::String(merge));
    writer.Set("tokenizer.ggml.merges", GgufValue::Array(GgufType::kString, std::move(merges)));
  }
  auto id = [&](const char* key, int32_t value) {
    if (value >= 0) writer.SetUint32(key, static_cast<uint32_t>(value));
  };
  id("tokenizer.ggml.bos_token_id", vocab.bos_id);
  id("tokenizer.ggml.eos_token_id", vocab.eos_id);
  id("tokenizer.ggml.padding_token_id", vocab.pad_id);
  id("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  if (!vocab.extra_eos_ids.empty()) id("tokenizer.ggml.eot_token_id", vocab.extra_eos_ids[0]);
  writer.SetBool("tokenizer.ggml.add_bos_token", vocab.add_bos);
  if (!vocab.chat_template.empty()) {
    writer.SetString("tokenizer.chat_template", vocab.chat_template);
  }
}

}  // namespace tandem::model
