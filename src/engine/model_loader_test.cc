// Model files written by the model library's dummy writer, read through LoadEngineModel: GGUF
// and safetensors forms of one seed must give the same logits (the GGUF form of Llama stores Q
// and K permuted for interleaved RoPE; the engine must pair dimensions accordingly).
#include "engine/model_loader.h"

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <vector>

#include "engine/kernels.h"
#include "gtest/gtest.h"
#include "model/model_writer.h"

namespace tandem::engine {
namespace {

constexpr uint64_t kSeed = 31;

class ModelLoaderFiles : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("tandem-engine-loader-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
};
class ModelLoaderTest : public ModelLoaderFiles,
                        public testing::WithParamInterface<model::Architecture> {};

// Greedy logits of `steps` decode steps after a short prompt.
std::vector<std::vector<float>> GreedyLogits(
    const EngineModel& model, int steps,
    const std::function<void(const uint8_t*, int64_t)>& release_source = nullptr) {
  ThreadPool pool(2);
  auto transformer = Transformer::Create(model.config, model.weights, &pool, release_source);
  EXPECT_TRUE(transformer.ok()) << transformer.status();
  auto kv = BlockPool::Create({.layout = (*transformer)->kv_layout(16), .budget_bytes = 8 << 20});
  EXPECT_TRUE(kv.ok()) << kv.status();
  std::vector<BlockId> blocks = std::move((*kv)->Allocate(4)).value();
  std::vector<int32_t> tokens = {1, 17, 42, 99, 7};
  std::vector<std::vector<float>> all;
  std::vector<float> logits(model.config.vocab_size);
  int64_t start = 0;
  for (int step = 0; step <= steps; ++step) {
    SequenceChunk chunk{.tokens = tokens, .start = start, .blocks = blocks};
    EXPECT_TRUE((*transformer)->Forward({&chunk, 1}, **kv, logits.data()).ok());
    all.push_back(logits);
    start += static_cast<int64_t>(tokens.size());
    tokens = {
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())};
  }
  return all;
}

TEST_P(ModelLoaderTest, GgufAndSafetensorsGiveTheSameLogits) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  auto config = model::PresetConfig("tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  config->architecture = GetParam();
  model::ApplyArchitectureDefaults(*config);
  const std::string gguf = (dir_ / "tiny.gguf").string();
  const std::string folder = (dir_ / "tiny-hf").string();
  ASSERT_TRUE(model::WriteDummyModel({.config = *config,
                                      .dtype = model::DType::kF32,
                                      .format = model::ModelFormat::kGguf,
                                      .seed = kSeed,
                                      .out = gguf})
                  .ok());
  ASSERT_TRUE(model::WriteDummyModel({.config = *config,
                                      .dtype = model::DType::kF32,
                                      .format = model::ModelFormat::kSafetensors,
                                      .seed = kSeed,
                                      .out = folder})
                  .ok());
  auto from_gguf = LoadEngineModel(gguf);
  ASSERT_TRUE(from_gguf.ok()) << from_gguf.status();
  auto from_folder = LoadEngineModel(folder);
  ASSERT_TRUE(from_folder.ok()) << from_folder.status();
  EXPECT_NE(from_gguf->tokenizer, nullptr);
  EXPECT_FALSE(from_gguf->chat_template.empty());
  EXPECT_EQ(from_gguf->model.config.num_layers, config->num_layers);

  std::vector<std::vector<float>> a = GreedyLogits(from_gguf->model, 8);
  std::vector<std::vector<float>> b = GreedyLogits(from_folder->model, 8);
  ASSERT_EQ(a.size(), b.size());
  for (size_t step = 0; step < a.size(); ++step) {
    for (size_t i = 0; i < a[step].size(); ++i) {
      ASSERT_TRUE(std::isfinite(a[step][i]));
      ASSERT_NEAR(a[step][i], b[step][i], 1e-4) << "step " << step << " logit " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, ModelLoaderTest,
                         testing::Values(model::Architecture::kLlama, model::Architecture::kQwen2,
                                         model::Architecture::kQwen3));

// A Q8_0 model file: where the engine packs the weights for its int8 kernel it drops the file's
// pages it copied; they fault in again from the file, so a second transformer built from the
// same mapping afterwards packs the same bytes and computes the same logits (had the pages come
// back zero, it would not).
TEST_F(ModelLoaderFiles, PackedQ8WeightsReleaseTheFilePagesAndRereadThem) {
  auto config = model::PresetConfig("tiny");
  ASSERT_TRUE(config.ok()) << config.status();
  config->tie_word_embeddings = true;  // the embedding is the LM head, packed and looked up
  const std::string gguf = (dir_ / "tiny-q8.gguf").string();
  ASSERT_TRUE(model::WriteDummyModel({.config = *config,
                                      .dtype = model::DType::kQ8_0,
                                      .format = model::ModelFormat::kGguf,
                                      .seed = kSeed,
                                      .out = gguf})
                  .ok());
  auto loaded = LoadEngineModel(gguf);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const EngineModel& model = loaded->model;
  ASSERT_TRUE(model.release_weight_pages != nullptr);
  ASSERT_EQ(model.weights.layers[0].wq.type, WeightType::kQ8_0);
  int64_t released = 0;
  const auto release = [&](const uint8_t* first, int64_t bytes) {
    released += bytes;
    model.release_weight_pages(first, bytes);
  };
  const auto first = GreedyLogits(model, 8, release);
  EXPECT_EQ(released > 0, WantsPacking(model.weights.layers[0].wq));
  EXPECT_EQ(GreedyLogits(model, 8), first);
  // The file's bytes are intact after the release.
  std::vector<float> row(model.config.hidden_size), again(model.config.hidden_size);
  DequantizeWeightRow(model.weights.token_embedding, 3, row.data());
  model.release_weight_pages(model.weights.token_embedding.row(0),
                             model.weights.token_embedding.bytes());
  DequantizeWeightRow(model.weights.token_embedding, 3, again.data());
  EXPECT_EQ(row, again);
}

TEST(ModelLoaderErrorsTest, BadReferencesNameWhatIsWrong) {
  EXPECT_NE(LoadEngineModel("random:nope").status().message().find("qwen2.5-0.5b"),
            std::string::npos);
  EXPECT_NE(LoadEngineModel("random:tiny:q5_1").status().message().find("q5_1"), std::string::npos);
  EXPECT_FALSE(LoadEngineModel("/nonexistent/model.gguf").ok());
}

}  // namespace
}  // namespace tandem::engine
