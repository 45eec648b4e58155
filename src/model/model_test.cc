// Round trips through the dummy-model writer (GGUF and safetensors, every dtype and
// architecture), reproducibility, config parsing, and the bad-input tables of LoadModel and the
// safetensors parser.
#include "model/model.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "model/gguf.h"
#include "model/gguf_model.h"
#include "model/model_writer.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"

namespace tandem::model {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}
void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string Scratch(const std::string& name) {
  const std::string path = testing::TempDir() + "/model_test_" + name;
  fs::remove_all(path);
  return path;
}

ModelConfig Tiny(Architecture architecture, bool tied = false) {
  ModelConfig config = *PresetConfig("tiny");
  config.architecture = architecture;
  ApplyArchitectureDefaults(config);
  config.tie_word_embeddings = tied;
  return config;
}

std::unique_ptr<Model> Write(const ModelConfig& config, DType dtype, ModelFormat format,
                             uint64_t seed, const std::string& out,
                             uint64_t max_shard_bytes = 5'000'000'000) {
  absl::Status status = WriteDummyModel({.config = config,
                                         .dtype = dtype,
                                         .format = format,
                                         .seed = seed,
                                         .out = out,
                                         .max_shard_bytes = max_shard_bytes});
  EXPECT_TRUE(status.ok()) << status;
  absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(out);
  EXPECT_TRUE(model.ok()) << model.status();
  return model.ok() ? std::move(*model) : nullptr;
}

std::vector<float> Row(const TensorView& t, int64_t row) {
  std::vector<float> out(t.cols());
  EXPECT_TRUE(DequantizeRow(t.dtype, t.row(row), t.cols(), out.data()).ok());
  return out;
}

// Every tensor of `a` (GGUF) equals `b` (safetensors) after dequantization, allowing for the
// Q/K row permutation of llama GGUF files and `tolerance` (relative to the row's largest value).
void ExpectSameTensors(const Model& gguf, const Model& st, double tolerance) {
  const ModelConfig& c = gguf.config();
  ASSERT_EQ(gguf.tensors().size(), st.tensors().size());
  for (const TensorView& a : gguf.tensors()) {
    const TensorView* b = st.FindTensor(a.name);
    ASSERT_NE(b, nullptr) << a.name;
    ASSERT_EQ(a.shape, b->shape) << a.name;
    const bool permuted = c.architecture == Architecture::kLlama &&
                          (a.name.find("attn_q.weight") != std::string::npos ||
                           a.name.find("attn_k.weight") != std::string::npos);
    for (int64_t r = 0; r < a.rows(); ++r) {
      const int64_t source = permuted ? LlamaGgufRowToHuggingFaceRow(r, 0, c.head_dim) : r;
      const std::vector<float> x = Row(a, r), y = Row(*b, source);
      float amax = 0;
      for (float v : y) amax = std::max(amax, std::fabs(v));
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_NEAR(x[i], y[i], tolerance * amax) << a.name << " row " << r << " col " << i;
      }
    }
  }
}

class RoundTripTest : public testing::TestWithParam<std::tuple<Architecture, DType, bool>> {};

TEST_P(RoundTripTest, GgufAndSafetensorsAgreeOnEveryTensor) {
  const auto [architecture, dtype, tied] = GetParam();
  const ModelConfig config = Tiny(architecture, tied);
  const std::string name =
      absl::StrCat(ArchitectureName(architecture), "_", DTypeName(dtype), tied ? "_tied" : "");
  std::unique_ptr<Model> gguf =
      Write(config, dtype, ModelFormat::kGguf, 7, Scratch(name + ".gguf"));
  // safetensors holds no Q8_0: compare a Q8_0 GGUF against F32 safetensors within the Q8_0 step.
  const DType st_dtype = dtype == DType::kQ8_0 ? DType::kF32 : dtype;
  std::unique_ptr<Model> st = Write(config, st_dtype, ModelFormat::kSafetensors, 7, Scratch(name));
  ASSERT_TRUE(gguf && st);
  ExpectSameTensors(*gguf, *st, dtype == DType::kQ8_0 ? 0.6 / 127 + 1e-3 : 0.0);

  // The configs agree (but for where RoPE pairs come from), and match what was written.
  ModelConfig a = gguf->config(), b = st->config();
  EXPECT_EQ(a.rope_style,
            architecture == Architecture::kLlama ? RopeStyle::kInterleaved : RopeStyle::kHalf);
  EXPECT_EQ(b.rope_style, RopeStyle::kHalf);
  for (const ModelConfig* c : {&a, &b}) {
    EXPECT_EQ(c->architecture, architecture);
    EXPECT_EQ(c->hidden_size, 64);
    EXPECT_EQ(c->num_kv_heads, 2);
    EXPECT_EQ(c->rms_norm_eps, 1e-5);
    EXPECT_EQ(c->tie_word_embeddings, tied);
    EXPECT_EQ(c->attention_bias, architecture == Architecture::kQwen2);
    EXPECT_EQ(c->qk_norm, architecture == Architecture::kQwen3);
    EXPECT_EQ(c->bos_id, 508);
  }
  EXPECT_EQ(gguf->ParameterCount(), ParameterCount(config));
  EXPECT_EQ(st->ParameterCount(), ParameterCount(config));

  // Both carry the same tokenizer and chat template.
  absl::StatusOr<std::unique_ptr<Tokenizer>> t1 = gguf->MakeTokenizer();
  absl::StatusOr<std::unique_ptr<Tokenizer>> t2 = st->MakeTokenizer();
  ASSERT_TRUE(t1.ok() && t2.ok()) << t1.status() << t2.status();
  const std::string text = "Hello, world! The model writes 1234 tokens.<|im_end|>";
  EXPECT_EQ((*t1)->Encode(text, true, true), (*t2)->Encode(text, true, true));
  EXPECT_FALSE(gguf->chat_template().empty());
  EXPECT_EQ(gguf->chat_template(), st->chat_template());
}

INSTANTIATE_TEST_SUITE_P(AllShapes, RoundTripTest,
                         testing::Values(std::make_tuple(Architecture::kLlama, DType::kF32, false),
                                         std::make_tuple(Architecture::kLlama, DType::kBF16, true),
                                         std::make_tuple(Architecture::kLlama, DType::kQ8_0, false),
                                         std::make_tuple(Architecture::kQwen2, DType::kF16, true),
                                         std::make_tuple(Architecture::kQwen2, DType::kQ8_0, false),
                                         std::make_tuple(Architecture::kQwen3, DType::kBF16, false),
                                         std::make_tuple(Architecture::kQwen3, DType::kF32, true)));

TEST(ModelWriterTest, ShardedSafetensorsMatchSingleFile) {
  const ModelConfig config = Tiny(Architecture::kQwen2);
  std::unique_ptr<Model> single =
      Write(config, DType::kBF16, ModelFormat::kSafetensors, 3, Scratch("single"));
  const std::string sharded_path = Scratch("sharded");
  std::unique_ptr<Model> sharded =
      Write(config, DType::kBF16, ModelFormat::kSafetensors, 3, sharded_path, 60'000);
  ASSERT_TRUE(single && sharded);
  EXPECT_TRUE(fs::exists(sharded_path + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(sharded_path + "/model-00001-of-00005.safetensors"));
  EXPECT_FALSE(fs::exists(sharded_path + "/model.safetensors"));
  for (const TensorView& t : single->tensors()) {
    const TensorView* u = sharded->FindTensor(t.name);
    ASSERT_NE(u, nullptr) << t.name;
    ASSERT_EQ(t.size_bytes, u->size_bytes);
    EXPECT_EQ(std::memcmp(t.data, u->data, t.size_bytes), 0) << t.name;
  }
}

TEST(ModelWriterTest, SameSeedSameBytesDifferentSeedDifferentBytes) {
  const ModelConfig config = Tiny(Architecture::kLlama);
  for (ModelFormat format : {ModelFormat::kGguf, ModelFormat::kSafetensors}) {
    const bool gguf = format == ModelFormat::kGguf;
    const std::string a = Scratch(gguf ? "seed_a.gguf" : "seed_a");
    const std::string b = Scratch(gguf ? "seed_b.gguf" : "seed_b");
    const std::string c = Scratch(gguf ? "seed_c.gguf" : "seed_c");
    const DType dtype = gguf ? DType::kQ8_0 : DType::kBF16;
    ASSERT_TRUE(
        WriteDummyModel({.config = config, .dtype = dtype, .format = format, .seed = 11, .out = a})
            .ok());
    ASSERT_TRUE(
        WriteDummyModel({.config = config, .dtype = dtype, .format = format, .seed = 11, .out = b})
            .ok());
    ASSERT_TRUE(
        WriteDummyModel({.config = config, .dtype = dtype, .format = format, .seed = 12, .out = c})
            .ok());
    const std::string file = gguf ? "" : "/model.safetensors";
    const std::string bytes_a = ReadFile(a + file);
    ASSERT_GT(bytes_a.size(), 100000u);
    EXPECT_EQ(bytes_a, ReadFile(b + file)) << "seed 11 twice";
    EXPECT_NE(bytes_a, ReadFile(c + file)) << "seeds 11 and 12";
    if (!gguf) {
      for (const char* f : {"/config.json", "/tokenizer.json", "/tokenizer_config.json"}) {
        EXPECT_EQ(ReadFile(a + f), ReadFile(b + f)) << f;
      }
    }
  }
}

TEST(ModelWriterTest, WeightsAreScaledAndNormsAreOne) {
  const ModelConfig config = *PresetConfig("small");
  std::unique_ptr<Model> model =
      Write(config, DType::kF32, ModelFormat::kGguf, 5, Scratch("small.gguf"));
  ASSERT_TRUE(model);
  EXPECT_NEAR(model->ParameterCount() / 1e6, 33.6, 0.1);  // untied: 29.4M + 4.2M head
  const TensorView* down = model->FindTensor("blk.3.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  double sum = 0, sum_squares = 0;
  const int64_t n = down->elements();
  const float* values = reinterpret_cast<const float*>(down->data);
  for (int64_t i = 0; i < n; ++i) {
    sum += values[i];
    sum_squares += values[i] * values[i];
  }
  const double std_dev = std::sqrt(sum_squares / n - (sum / n) * (sum / n));
  EXPECT_NEAR(std_dev, 1.0 / std::sqrt(1536.0), 0.02 / std::sqrt(1536.0));
  EXPECT_NEAR(sum / n, 0.0, 0.001);
  EXPECT_EQ(Row(*model->FindTensor("output_norm.weight"), 0), std::vector<float>(512, 1.0f));
}

TEST(ModelWriterTest, RefusesWhatCannotBeWritten) {
  ModelConfig config = Tiny(Architecture::kLlama);
  absl::Status status = WriteDummyModel({.config = config,
                                         .dtype = DType::kQ8_0,
                                         .format = ModelFormat::kSafetensors,
                                         .out = Scratch("x")});
  EXPECT_THAT(status.message(), HasSubstr("use --format gguf for q8_0"));
  config.hidden_size = 48;
  config.head_dim = 12;
  status = WriteDummyModel({.config = config, .dtype = DType::kQ8_0, .out = Scratch("x.gguf")});
  EXPECT_THAT(status.message(), HasSubstr("not a multiple of the Q8_0 block size 32"));
  config = Tiny(Architecture::kLlama);
  config.num_kv_heads = 3;
  status = WriteDummyModel({.config = config, .out = Scratch("x.gguf")});
  EXPECT_THAT(status.message(), HasSubstr("multiple of num_kv_heads"));
  EXPECT_THAT(PresetConfig("gpt-5").status().message(), HasSubstr("tiny, small"));
}

TEST(ModelConfigTest, ParsesRealConfigs) {
  // Llama-3.1-8B's config.json (abridged: keys Tandem ignores removed).
  const char* llama31 = R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu", "hidden_size": 4096,
    "intermediate_size": 14336, "max_position_embeddings": 131072, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "vocab_size": 128256})";
  absl::StatusOr<ModelConfig> c = ConfigFromHuggingFaceJson(llama31, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->architecture, Architecture::kLlama);
  EXPECT_EQ(c->head_dim, 128);
  EXPECT_EQ(c->eos_id, 128001);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(KvBytesPerToken(*c, DType::kBF16), 2 * 32 * 8 * 128 * 2);
  EXPECT_NEAR(ParameterCount(*c) / 1e9, 8.03, 0.01);

  const char* qwen = R"({"architectures": ["Qwen2ForCausalLM"], "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_size": 896, "intermediate_size": 4864,
    "max_position_embeddings": 32768, "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "use_sliding_window": false,
    "vocab_size": 151936, "rope_scaling": null})";
  c = ConfigFromHuggingFaceJson(qwen, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_TRUE(c->attention_bias);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_NEAR(ParameterCount(*c) / 1e6, 494.0, 1.0);  // Qwen2.5-0.5B: 494M

  // The config Tandem writes reads back the same.
  absl::StatusOr<ModelConfig> again =
      ConfigFromHuggingFaceJson(ConfigToHuggingFaceJson(*c), "written.json");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->num_kv_heads, 2);
  EXPECT_EQ(again->rope_theta, 1e6);
}

TEST(ModelConfigTest, BadConfigJsonTable) {
  const struct {
    const char* json;
    std::vector<std::string> expected;
  } cases[] = {
      {R"({"architectures": ["MixtralForCausalLM"]})",
       {"config.json: architecture 'MixtralForCausalLM' is not supported (supported: llama, qwen2, "
        "qwen3)"}},
      {"{not json", {"config.json", "not valid JSON"}},
      {"[1]", {"config.json", "expected a JSON object"}},
      {R"({"model_type": "llama"})", {"config.json", "missing key 'vocab_size'"}},
      {R"({"model_type": "llama", "vocab_size": "big", "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2})",
       {"config.json", "key 'vocab_size'", "expected an integer", "\"big\""}},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 3})",
       {"config.json", "multiple of num_kv_heads"}},
      {R"({"model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 2, "rope_scaling": {"rope_type": "yarn", "factor": 4}})",
       {"config.json: rope_scaling", "'yarn' is not supported"}},
  };
  for (const auto& c : cases) {
    absl::StatusOr<ModelConfig> config = ConfigFromHuggingFaceJson(c.json, "config.json");
    ASSERT_FALSE(config.ok()) << c.json;
    for (const std::string& e : c.expected) {
      EXPECT_THAT(std::string(config.status().message()), HasSubstr(e)) << c.json;
    }
  }
}

TEST(ModelTest, NameMapping) {
  EXPECT_EQ(*HuggingFaceToGgufName("model.layers.12.self_attn.q_proj.bias"), "blk.12.attn_q.bias");
  EXPECT_EQ(*HuggingFaceToGgufName("model.layers.0.self_attn.k_norm.weight"),
            "blk.0.attn_k_norm.weight");
  EXPECT_EQ(*HuggingFaceToGgufName("lm_head.weight"), "output.weight");
  EXPECT_FALSE(HuggingFaceToGgufName("model.layers.0.self_attn.rotary_emb.inv_freq"));
  EXPECT_FALSE(HuggingFaceToGgufName("model.layers.x.mlp.up_proj.weight"));
  for (const ExpectedTensor& t : ExpectedTensors(Tiny(Architecture::kQwen3))) {
    EXPECT_EQ(*HuggingFaceToGgufName(GgufToHuggingFaceName(t.name)), t.name);
  }
}

TEST(ModelTest, Llama31RopeFreqsTensorIsRecognised) {
  ModelConfig config = Tiny(Architecture::kLlama);
  config.head_dim = 128;
  config.hidden_size = 512;
  config.num_heads = 4;
  config.rope_theta = 500000;
  config.rope_scaling = {.type = RopeScaling::Type::kLlama3,
                         .factor = 8,
                         .low_freq_factor = 1,
                         .high_freq_factor = 4,
                         .original_max_position_embeddings = 8192};
  std::vector<float> factors = Llama3RopeFactors(config);
  ASSERT_EQ(factors.size(), 64u);
  EXPECT_EQ(factors.front(), 1.0f);
  EXPECT_EQ(factors.back(), 8.0f);
  // A GGUF with rope_freqs.weight and no scaling keys, as llama.cpp's converter writes it.
  GgufFile gguf;
  ModelConfig plain = config;
  plain.rope_scaling = {};
  GgufWriter writer;
  ConfigToGguf(plain, writer);
  const std::string path = Scratch("ropefreqs.gguf");
  ASSERT_TRUE(writer.AddTensor("rope_freqs.weight", DType::kF32, {64}).ok());
  ASSERT_TRUE(writer.Open(path).ok());
  ASSERT_TRUE(writer.Append(factors.data(), factors.size() * 4).ok());
  ASSERT_TRUE(writer.Finish().ok());
  const std::string bytes = ReadFile(path);
  absl::StatusOr<GgufFile> parsed =
      ParseGguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<ModelConfig> read = ConfigFromGguf(*parsed, path, &factors);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->rope_scaling.type, RopeScaling::Type::kLlama3);
  factors[10] *= 2;
  EXPECT_THAT(ConfigFromGguf(*parsed, path, &factors).status().message(),
              HasSubstr("rope_freqs.weight"));
}

// Writes a tiny GGUF model whose metadata comes from `config` and whose tensors are those of
// `tensors_of` minus `skip`.
std::string WriteCustomGguf(const std::string& name, const ModelConfig& config,
                            const ModelConfig& tensors_of, const std::string& skip,
                            const std::string& architecture = "") {
  GgufWriter writer;
  ConfigToGguf(config, writer);
  if (!architecture.empty()) writer.SetString("general.architecture", architecture);
  std::vector<ExpectedTensor> tensors;
  for (ExpectedTensor& t : ExpectedTensors(tensors_of)) {
    if (t.name != skip) tensors.push_back(std::move(t));
  }
  for (const ExpectedTensor& t : tensors)
    EXPECT_TRUE(writer.AddTensor(t.name, DType::kF32, t.shape).ok());
  const std::string path = Scratch(name);
  EXPECT_TRUE(writer.Open(path).ok());
  for (const ExpectedTensor& t : tensors) {
    int64_t n = 1;
    for (int64_t e : t.shape) n *= e;
    std::vector<float> zeros(n);
    EXPECT_TRUE(writer.Append(zeros.data(), n * 4).ok());
  }
  EXPECT_TRUE(writer.Finish().ok());
  return path;
}

TEST(LoadModelTest, BadGgufModelsTable) {
  const ModelConfig config = Tiny(Architecture::kLlama);
  const std::string good = Scratch("good.gguf");
  ASSERT_TRUE(WriteDummyModel({.config = config, .dtype = DType::kF16, .out = good}).ok());
  const std::string bytes = ReadFile(good);
  struct Case {
    std::string path;
    std::vector<std::string> expected;
  };
  std::vector<Case> cases;
  const std::string truncated = Scratch("truncated.gguf");
  WriteFile(truncated, bytes.substr(0, bytes.size() - 1000));
  cases.push_back({truncated, {truncated, "past the end of the file", "truncated"}});
  const std::string header_only = Scratch("header_only.gguf");
  WriteFile(header_only, bytes.substr(0, 3000));
  cases.push_back({header_only, {header_only, "truncated"}});
  const std::string magic = Scratch("magic.gguf");
  WriteFile(magic, "GGJT" + bytes.substr(4));
  cases.push_back({magic, {magic, "not a GGUF file"}});
  cases.push_back({WriteCustomGguf("missing.gguf", config, config, "blk.1.ffn_up.weight"),
                   {"missing.gguf", "missing tensor 'blk.1.ffn_up.weight'", "[64, 128]"}});
  ModelConfig wider = config;
  wider.intermediate_size = 256;
  cases.push_back(
      {WriteCustomGguf("shape.gguf", config, wider, ""),
       {"shape.gguf", "tensor 'blk.0.ffn_gate.weight' has shape [64, 256]", "expected [64, 128]"}});
  cases.push_back({WriteCustomGguf("arch.gguf", config, config, "", "falcon"),
                   {"arch.gguf", "general.architecture",
                    "architecture 'falcon' is not supported (supported: llama, qwen2, qwen3)"}});
  cases.push_back({Scratch("does_not_exist.gguf"), {"does not exist"}});
  for (const Case& c : cases) {
    absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(c.path);
    ASSERT_FALSE(model.ok()) << c.path;
    for (const std::string& e : c.expected) {
      EXPECT_THAT(std::string(model.status().message()), HasSubstr(e)) << c.path;
    }
  }
}

TEST(LoadModelTest, BadSafetensorsFoldersTable) {
  const ModelConfig config = Tiny(Architecture::kQwen2);
  struct Case {
    std::string name;
    std::function<void(const std::string&)> damage;
    std::vector<std::string> expected;
  };
  auto replace_weights = [](const std::string& folder, const std::string& bytes) {
    WriteFile(folder + "/model.safetensors", bytes);
  };
  auto header = [](const std::string& json, size_t data_bytes) {
    std::string out(8, '\0');
    const uint64_t n = json.size();
    std::memcpy(out.data(), &n, 8);
    return out + json + std::string(data_bytes, '\0');
  };
  std::vector<Case> cases = {
      {"mixtral",
       [](const std::string& f) {
         WriteFile(f + "/config.json", R"({"architectures": ["MixtralForCausalLM"]})");
       },
       {"config.json: architecture 'MixtralForCausalLM' is not supported (supported: llama, qwen2, "
        "qwen3)"}},
      {"no_config",
       [](const std::string& f) { fs::remove(f + "/config.json"); },
       {"no config.json"}},
      {"no_weights",
       [](const std::string& f) { fs::remove(f + "/model.safetensors"); },
       {"no model.safetensors or model.safetensors.index.json"}},
      {"bad_tokenizer",
       [](const std::string& f) { WriteFile(f + "/tokenizer.json", "{\"model\": 3"); },
       {"tokenizer.json"}},
      {"truncated",
       [&](const std::string& f) {
         const std::string bytes = ReadFile(f + "/model.safetensors");
         replace_weights(f, bytes.substr(0, bytes.size() - 100));
       },
       {"model.safetensors", "past the end of the data region"}},
      {"short_file",
       [&](const std::string& f) { replace_weights(f, "abc"); },
       {"model.safetensors", "truncated"}},
      {"huge_header",
       [&](const std::string& f) {
         replace_weights(f, std::string("\xff\xff\xff\xff\xff\xff\0\0{}", 10));
       },
       {"model.safetensors", "header length"}},
      {"malformed_json",
       [&](const std::string& f) { replace_weights(f, header("{\"a\": [1,", 0)); },
       {"model.safetensors", "malformed header"}},
      {"wrong_dtype_size",
       [&](const std::string& f) {
         replace_weights(
             f, header(R"({"lm_head.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,12]}})",
                       12));
       },
       {"tensor 'lm_head.weight'", "hold 12 bytes", "F32 x 6 elements needs 24"}},
      {"unsupported_dtype",
       [&](const std::string& f) {
         replace_weights(f, header(R"({"x":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})", 8));
       },
       {"tensor 'x'", "dtype 'I64' is not supported (supported: F32, F16, BF16)"}},
      {"overlap",
       [&](const std::string& f) {
         replace_weights(f, header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                   R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                   16));
       },
       {"tensors 'a'", "'b'", "overlap"}},
      {"missing_tensor",
       [&](const std::string& f) {
         replace_weights(
             f,
             header(
                 R"({"model.embed_tokens.weight":{"dtype":"F32","shape":[512,64],"data_offsets":[0,131072]}})",
                 131072));
       },
       {"missing tensor 'blk.0.attn_norm.weight'"}},
  };
  for (const Case& c : cases) {
    const std::string folder = Scratch("bad_" + c.name);
    ASSERT_TRUE(WriteDummyModel({.config = config,
                                 .dtype = DType::kF16,
                                 .format = ModelFormat::kSafetensors,
                                 .out = folder})
                    .ok());
    c.damage(folder);
    absl::StatusOr<std::unique_ptr<Model>> model = LoadModel(folder);
    ASSERT_FALSE(model.ok()) << c.name;
    for (const std::string& e : c.expected) {
      EXPECT_THAT(std::string(model.status().message()), HasSubstr(e)) << c.name;
    }
  }
}

TEST(LoadModelTest, TensorViewsAndErrors) {
  std::unique_ptr<Model> model =
      Write(Tiny(Architecture::kLlama), DType::kBF16, ModelFormat::kGguf, 1, Scratch("views.gguf"));
  ASSERT_TRUE(model);
  absl::StatusOr<const TensorView*> wq = model->GetTensor("blk.0.attn_q.weight");
  ASSERT_TRUE(wq.ok());
  EXPECT_EQ((*wq)->rows(), 64);  // output features
  EXPECT_EQ((*wq)->cols(), 64);  // input features, contiguous
  EXPECT_EQ((*wq)->row_bytes(), 128);
  EXPECT_EQ((*wq)->ShapeString(), "[64, 64]");
  EXPECT_THAT(model->GetTensor("blk.9.attn_q.weight").status().message(),
              HasSubstr("views.gguf: no tensor 'blk.9.attn_q.weight'"));
  EXPECT_EQ(model->metadata_summary().front().first, "general.architecture");
}

}  // namespace
}  // namespace tandem::model
