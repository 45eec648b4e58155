#include "model/model_config.h"

#include <cmath>
#include <limits>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

using Json = nlohmann::json;

constexpr const char* kSupported = "supported: llama, qwen2, qwen3";

// Reads optional keys of a config.json object with type checks; errors name the file and key.
class JsonReader {
 public:
  JsonReader(const Json& object, std::string source)
      : object_(object), source_(std::move(source)) {}

  absl::Status Error(const std::string& key, absl::string_view expected) const {
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ": key '", key, "': expected ", expected, ", got ", Describe(key)));
  }

  bool Has(const std::string& key) const {
    auto it = object_.find(key);
    return it != object_.end() && !it->is_null();
  }

  // A positive integer (or, when `allow_zero`, a non-negative one).
  absl::Status Int(const std::string& key, int64_t* out, bool required,
                   bool allow_zero = false) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) {
      if (required) {
        return absl::InvalidArgumentError(
            absl::StrCat(source_, ": missing key '", key, "' (expected a positive integer)"));
      }
      return absl::OkStatus();
    }
    if (!it->is_number_integer()) return Error(key, "an integer");
    const int64_t value = it->get<int64_t>();
    if (value < 0 || (value == 0 && !allow_zero) || value > (int64_t{1} << 40)) {
      return Error(key, allow_zero ? "a non-negative integer" : "a positive integer");
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status Double(const std::string& key, double* out, bool positive = true) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_number()) return Error(key, "a number");
    const double value = it->get<double>();
    if (!std::isfinite(value) || (positive && value <= 0)) {
      return Error(key, positive ? "a positive finite number" : "a finite number");
    }
    *out = value;
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return absl::OkStatus();
    if (!it->is_boolean()) return Error(key, "true or false");
    *out = it->get<bool>();
    return absl::OkStatus();
  }

  // A token id, or a list of them (the first is taken: Llama-3.1 lists several EOS ids).
  absl::Status TokenId(const std::string& key, int32_t* out) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return absl::OkStatus();
    const Json* value = &*it;
    if (value->is_array()) {
      if (value->empty()) return absl::OkStatus();
      value = &(*value)[0];
    }
    if (!value->is_number_integer() || value->get<int64_t>() < 0 ||
        value->get<int64_t>() > std::numeric_limits<int32_t>::max()) {
      return Error(key, "a token id (non-negative integer) or a list of them");
    }
    *out = static_cast<int32_t>(value->get<int64_t>());
    return absl::OkStatus();
  }

 private:
  std::string Describe(const std::string& key) const {
    auto it = object_.find(key);
    if (it == object_.end()) return "nothing";
    std::string dumped = it->dump();
    if (dumped.size() > 40) dumped = dumped.substr(0, 37) + "...";
    return dumped;
  }

  const Json& object_;
  std::string source_;
};

absl::Status ParseRopeScaling(const Json& json, const std::string& source, RopeScaling* out) {
  auto it = json.find("rope_scaling");
  if (it == json.end() || it->is_null()) return absl::OkStatus();
  const std::string where = absl::StrCat(source, ": rope_scaling");
  if (!it->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected an object or null"));
  }
  const Json& scaling = *it;
  std::string type;
  for (const char* key : {"rope_type", "type"}) {
    auto t = scaling.find(key);
    if (t != scaling.end() && t->is_string()) {
      type = t->get<std::string>();
      break;
    }
  }
  JsonReader reader(scaling, where);
  if (type == "default" || type.empty()) {
    out->type = RopeScaling::Type::kNone;
    return absl::OkStatus();
  }
  if (type == "linear") {
    out->type = RopeScaling::Type::kLinear;
  } else if (type == "llama3") {
    out->type = RopeScaling::Type::kLlama3;
    int64_t original = out->original_max_position_embeddings;
    absl::Status status = reader.Int("original_max_position_embeddings", &original, true);
    if (!status.ok()) return status;
    out->original_max_position_embeddings = original;
    if (absl::Status s = reader.Double("low_freq_factor", &out->low_freq_factor); !s.ok()) return s;
    if (absl::Status s = reader.Double("high_freq_factor", &out->high_freq_factor); !s.ok()) {
      return s;
    }
    if (out->high_freq_factor <= out->low_freq_factor) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": high_freq_factor must exceed low_freq_factor"));
    }
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": rope type '", type, "' is not supported (supported: default, linear, llama3)"));
  }
  if (!scaling.contains("factor")) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": missing key 'factor'"));
  }
  return reader.Double("factor", &out->factor);
}

}  // namespace

std::string ArchitectureName(Architecture architecture) {
  switch (architecture) {
    case Architecture::kLlama:
      return "llama";
    case Architecture::kQwen2:
      return "qwen2";
    case Architecture::kQwen3:
      return "qwen3";
  }
  return "unknown";
}

absl::StatusOr<Architecture> ParseArchitecture(std::string_view name) {
  if (name == "llama" || name == "mistral" || name == "LlamaForCausalLM" ||
      name == "MistralForCausalLM") {
    return Architecture::kLlama;
  }
  if (name == "qwen2" || name == "Qwen2ForCausalLM") return Architecture::kQwen2;
  if (name == "qwen3" || name == "Qwen3ForCausalLM") return Architecture::kQwen3;
  return absl::InvalidArgumentError(
      absl::StrCat("architecture '", std::string(name), "' is not supported (", kSupported, ")"));
}

void ApplyArchitectureDefaults(ModelConfig& config) {
  config.attention_bias = config.architecture == Architecture::kQwen2;
  config.qk_norm = config.architecture == Architecture::kQwen3;
}

absl::Status ValidateConfig(const ModelConfig& c, std::string_view source_name) {
  const std::string source(source_name);
  auto fail = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  const struct {
    const char* name;
    int64_t value;
  } dims[] = {{"vocab_size", c.vocab_size},
              {"hidden_size", c.hidden_size},
              {"intermediate_size", c.intermediate_size},
              {"num_layers", c.num_layers},
              {"num_heads", c.num_heads},
              {"num_kv_heads", c.num_kv_heads},
              {"head_dim", c.head_dim},
              {"max_position_embeddings", c.max_position_embeddings}};
  for (const auto& dim : dims) {
    if (dim.value <= 0) return fail(absl::StrCat(dim.name, " must be positive, got ", dim.value));
    if (dim.value > (int64_t{1} << 31)) {
      return fail(absl::StrCat(dim.name, " = ", dim.value, " is implausibly large"));
    }
  }
  if (c.num_layers > 4096)
    return fail(absl::StrCat("num_layers = ", c.num_layers, " is too large"));
  if (c.num_heads % c.num_kv_heads != 0) {
    return fail(absl::StrCat("num_heads (", c.num_heads, ") must be a multiple of num_kv_heads (",
                             c.num_kv_heads, ")"));
  }
  if (c.head_dim % 2 != 0) return fail(absl::StrCat("head_dim (", c.head_dim, ") must be even"));
  if (!(c.rms_norm_eps > 0) || !std::isfinite(c.rms_norm_eps)) {
    return fail("rms_norm_eps must be a positive number");
  }
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
    return fail("rope_theta must be a positive number");
  }
  if (c.rope_scaling.type != RopeScaling::Type::kNone &&
      (!(c.rope_scaling.factor > 0) || !std::isfinite(c.rope_scaling.factor))) {
    return fail("rope scaling factor must be a positive number");
  }
  if (c.bos_id >= c.vocab_size || c.eos_id >= c.vocab_size) {
    return fail(absl::StrCat("bos/eos token id (", c.bos_id, "/", c.eos_id,
                             ") outside the vocabulary of ", c.vocab_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelConfig> ConfigFromHuggingFaceJson(std::string_view json_text,
                                                      std::string_view source_name) {
  const std::string source(source_name);
  Json json = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  }
  if (!json.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": expected a JSON object"));
  }
  ModelConfig config;
  // `architectures` names the model class; `model_type` is the family. Either decides.
  std::string architecture;
  if (auto it = json.find("architectures");
      it != json.end() && it->is_array() && !it->empty() && (*it)[0].is_string()) {
    architecture = (*it)[0].get<std::string>();
  } else if (auto type = json.find("model_type"); type != json.end() && type->is_string()) {
    architecture = type->get<std::string>();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": missing 'architectures' and 'model_type' (expected e.g. \"LlamaForCausalLM\")"));
  }
  absl::StatusOr<Architecture> parsed = ParseArchitecture(architecture);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", parsed.status().message()));
  }
  config.architecture = *parsed;
  ApplyArchitectureDefaults(config);

  JsonReader reader(json, source);
  absl::Status status;
  auto check = [&](absl::Status s) {
    if (status.ok() && !s.ok()) status = s;
  };
  check(reader.Int("vocab_size", &config.vocab_size, true));
  check(reader.Int("hidden_size", &config.hidden_size, true));
  check(reader.Int("intermediate_size", &config.intermediate_size, true));
  check(reader.Int("num_hidden_layers", &config.num_layers, true));
  check(reader.Int("num_attention_heads", &config.num_heads, true));
  config.num_kv_heads = config.num_heads;
  check(reader.Int("num_key_value_heads", &config.num_kv_heads, false));
  if (!status.ok()) return status;
  config.head_dim = config.num_heads > 0 ? config.hidden_size / config.num_heads : 0;
  check(reader.Int("head_dim", &config.head_dim, false));
  check(reader.Double("rms_norm_eps", &config.rms_norm_eps));
  check(reader.Double("rope_theta", &config.rope_theta));
  check(reader.Int("max_position_embeddings", &config.max_position_embeddings, false));
  check(reader.Bool("tie_word_embeddings", &config.tie_word_embeddings));
  if (config.architecture == Architecture::kLlama) {
    check(reader.Bool("attention_bias", &config.attention_bias));
  }
  check(reader.TokenId("bos_token_id", &config.bos_id));
  check(reader.TokenId("eos_token_id", &config.eos_id));
  check(ParseRopeScaling(json, source, &config.rope_scaling));
  if (!status.ok()) return status;
  if (config.head_dim * config.num_heads != config.hidden_size && !reader.Has("head_dim")) {
    return reader.Error("num_attention_heads",
                        "a divisor of hidden_size (or an explicit head_dim)");
  }
  config.rope_style = RopeStyle::kHalf;
  status = ValidateConfig(config, source);
  if (!status.ok()) return status;
  return config;
}

std::string ConfigToHuggingFaceJson(const ModelConfig& config) {
  Json json;
  std::string class_name;
  switch (config.architecture) {
    case Architecture::kLlama:
      class_name = "LlamaForCausalLM";
      break;
    case Architecture::kQwen2:
      class_name = "Qwen2ForCausalLM";
      break;
    case Architecture::kQwen3:
      class_name = "Qwen3ForCausalLM";
      break;
  }
  json["architectures"] = Json::array({class_name});
  json["model_type"] = std::string(ArchitectureName(config.architecture));
  json["vocab_size"] = config.vocab_size;
  json["hidden_size"] = config.hidden_size;
  json["intermediate_size"] = config.intermediate_size;
  json["num_hidden_layers"] = config.num_layers;
  json["num_attention_heads"] = config.num_heads;
  json["num_key_value_heads"] = config.num_kv_heads;
  json["head_dim"] = config.head_dim;
  json["hidden_act"] = "silu";
  json["rms_norm_eps"] = config.rms_norm_eps;
  json["rope_theta"] = config.rope_theta;
  json["max_position_embeddings"] = config.max_position_embeddings;
  json["tie_word_embeddings"] = config.tie_word_embeddings;
  if (config.architecture == Architecture::kLlama) json["attention_bias"] = config.attention_bias;
  if (config.bos_id >= 0) json["bos_token_id"] = config.bos_id;
  if (config.eos_id >= 0) json["eos_token_id"] = config.eos_id;
  switch (config.rope_scaling.type) {
    case RopeScaling::Type::kNone:
      json["rope_scaling"] = nullptr;
      break;
    case RopeScaling::Type::kLinear:
      json["rope_scaling"] = {{"rope_type", "linear"}, {"factor", config.rope_scaling.factor}};
      break;
    case RopeScaling::Type::kLlama3:
      json["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", config.rope_scaling.factor},
                              {"low_freq_factor", config.rope_scaling.low_freq_factor},
                              {"high_freq_factor", config.rope_scaling.high_freq_factor},
                              {"original_max_position_embeddings",
                               config.rope_scaling.original_max_position_embeddings}};
      break;
  }
  json["torch_dtype"] = "bfloat16";
  return json.dump(2) + "\n";
}

int64_t KvBytesPerToken(const ModelConfig& config, DType kv_dtype) {
  const int64_t per_layer = ByteSize(kv_dtype, config.num_kv_heads * config.head_dim);
  if (per_layer < 0) return -1;
  return 2 * config.num_layers * per_layer;
}

int64_t ParameterCount(const ModelConfig& c) {
  const int64_t q = c.num_heads * c.head_dim;
  const int64_t kv = c.num_kv_heads * c.head_dim;
  int64_t layer = 2 * c.hidden_size               // attn_norm, ffn_norm
                  + c.hidden_size * (q + 2 * kv)  // q, k, v
                  + q * c.hidden_size             // output
                  + 3 * c.hidden_size * c.intermediate_size;
  if (c.attention_bias) layer += q + 2 * kv;
  if (c.qk_norm) layer += 2 * c.head_dim;
  int64_t total = c.vocab_size * c.hidden_size + c.num_layers * layer + c.hidden_size;
  if (!c.tie_word_embeddings) total += c.vocab_size * c.hidden_size;
  return total;
}

std::string DescribeConfig(const ModelConfig& c) {
  std::string rope = absl::StrFormat("rope theta %g", c.rope_theta);
  if (c.rope_scaling.type == RopeScaling::Type::kLlama3) {
    absl::StrAppendFormat(&rope, " (llama3 scaling x%g, original context %d)",
                          c.rope_scaling.factor, c.rope_scaling.original_max_position_embeddings);
  } else if (c.rope_scaling.type == RopeScaling::Type::kLinear) {
    absl::StrAppendFormat(&rope, " (linear scaling x%g)", c.rope_scaling.factor);
  }
  return absl::StrFormat(
      "%s, %d layers, hidden %d, heads %d (kv %d) x %d, ffn %d, vocab %d, context %d, %s, "
      "norm eps %g%s%s%s",
      ArchitectureName(c.architecture), c.num_layers, c.hidden_size, c.num_heads, c.num_kv_heads,
      c.head_dim, c.intermediate_size, c.vocab_size, c.max_position_embeddings, rope,
      c.rms_norm_eps, c.tie_word_embeddings ? ", tied embeddings" : "",
      c.attention_bias ? ", qkv bias" : "", c.qk_norm ? ", qk norm" : "");
}

}  // namespace tandem::model
