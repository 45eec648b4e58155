#include "engine/profiler.h"

#include "engine/random_model.h"
#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

TEST(ProfilerTest, WritesAValidProfileTheLatencyModelReads) {
  TransformerConfig config{.architecture = Architecture::kLlama,
                           .vocab_size = 64,
                           .hidden_size = 32,
                           .intermediate_size = 64,
                           .num_layers = 2,
                           .num_heads = 4,
                           .num_kv_heads = 2,
                           .head_dim = 8,
                           .max_context = 128};
  auto random = MakeRandomModel(config, WeightType::kF32, 5);
  ASSERT_TRUE(random.ok());
  std::shared_ptr<RandomModel> owned = std::move(random).value();
  EngineModel model{
      .name = "tiny", .config = owned->config, .weights = owned->weights, .keepalive = owned};
  int lines = 0;
  auto profile = MeasureLatencyProfile(
      model, {.threads = 2,
              .block_size = 4,
              .max_batch_tokens = 24,
              .prefill_tokens = {8, 40, 500},  // 500 is past the context: skipped
              .prefix_points = {{32, 8}},
              .batch_sizes = {1, 3},
              .contexts = {10, 100},
              .repeats = 1,
              .progress = [&](const std::string&) { ++lines; }});
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->prefill.size(), 3u);
  EXPECT_EQ(profile->prefill[2].cached_tokens, 32);
  ASSERT_EQ(profile->decode.size(), 4u);
  EXPECT_EQ(profile->decode[3].batch_size, 3);
  EXPECT_EQ(profile->decode[3].context_tokens, 3 * 101);
  EXPECT_EQ(profile->dtype, "f32");
  EXPECT_EQ(profile->kv_dtype, "f32");  // auto: F32 weights keep F32 KV
  EXPECT_EQ(profile->hardware.threads, 2);
  EXPECT_GT(profile->model.parameters, 0);
  EXPECT_EQ(lines, 7);
  auto parsed = ParseLatencyProfile(SerializeLatencyProfile(*profile), "profile.json");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(LatencyModel::Create(*parsed).ok());
}

}  // namespace
}  // namespace tandem::engine
