#include "engine/engine.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <future>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/random_model.h"
#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

constexpr uint64_t kSeed = 77;

TransformerConfig TinyConfig() {
  return {.architecture = Architecture::kQwen2,
          .vocab_size = 96,
          .hidden_size = 32,
          .intermediate_size = 64,
          .num_layers = 2,
          .num_heads = 4,
          .num_kv_heads = 2,
          .head_dim = 8,
          .max_context = 256};
}

EngineModel TinyModel(std::function<void(RandomModel&)> edit = nullptr,
                      WeightType type = WeightType::kF32) {
  // Edited models get their own LM head, so an edited embedding row stays out of the logits.
  auto random = MakeRandomModel(TinyConfig(), type, kSeed, /*untied_head=*/edit != nullptr);
  EXPECT_TRUE(random.ok()) << random.status();
  std::shared_ptr<RandomModel> owned = std::move(random).value();
  if (edit) edit(*owned);
  return {.name = "tiny", .config = owned->config, .weights = owned->weights, .keepalive = owned};
}

EngineOptions Options(std::optional<KvType> kv_type = std::nullopt) {
  return {.threads = 2,
          .block_size = 4,
          .kv_type = kv_type,
          .kv_budget_bytes = 512 * 2 * 2 * 2 * 4 * 8 * 4};
}

std::vector<int32_t> Prompt(int length, int salt) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < length; ++i) tokens.push_back((i * 31 + salt * 17 + 3) % 96);
  return tokens;
}

struct Outcome {
  std::vector<int32_t> tokens;
  FinishEvent finish;
};

// Submits every request and waits for all of them. The engine thread is held at the first
// generated token until every request is in, so they really share batches however the threads
// are scheduled.
std::vector<Outcome> RunAll(Engine& engine, std::vector<GenerateRequest> requests) {
  std::vector<Outcome> outcomes(requests.size());
  std::vector<std::promise<void>> done(requests.size());
  std::promise<void> all_submitted;
  std::shared_future<void> submitted = all_submitted.get_future().share();
  for (size_t i = 0; i < requests.size(); ++i) {
    requests[i].on_token = [&outcomes, i, submitted](const TokenEvent& t) {
      submitted.wait();
      outcomes[i].tokens.push_back(t.sampled.token);
      return true;
    };
    requests[i].on_finish = [&outcomes, &done, i](const FinishEvent& f) {
      outcomes[i].finish = f;
      done[i].set_value();
    };
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    auto id = engine.Submit(std::move(requests[i]));
    EXPECT_TRUE(id.ok()) << id.status();
    if (!id.ok()) done[i].set_value();
  }
  all_submitted.set_value();
  for (auto& d : done) d.get_future().wait();
  return outcomes;
}

GenerateRequest Greedy(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenerateRequest request;
  request.prompt = std::move(prompt);
  request.max_tokens = max_tokens;
  request.sampling.temperature = 0;
  return request;
}

std::vector<int32_t> Alone(const std::vector<int32_t>& prompt, int64_t max_tokens,
                           WeightType type = WeightType::kF32,
                           std::optional<KvType> kv_type = std::nullopt) {
  auto engine = Engine::Create(TinyModel(nullptr, type), Options(kv_type));
  EXPECT_TRUE(engine.ok());
  return RunAll(**engine, {Greedy(prompt, max_tokens)})[0].tokens;
}

struct InvarianceCase {
  WeightType weights;
  std::optional<KvType> kv;  // unset: auto
  KvType expected_kv;
};

class BatchInvarianceTest : public testing::TestWithParam<InvarianceCase> {};

// Q8_0 and BF16 take the narrow-precision kernels where the CPU has them, F32 the row kernels
// and sgemm, and each with F32 or BF16 KV: every path must give a sequence the same tokens
// whatever shares its steps.
TEST_P(BatchInvarianceTest, GreedyOutputIsTheSameAloneAndInABatchOf32) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  const WeightType type = GetParam().weights;
  const std::optional<KvType> kv = GetParam().kv;
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < 32; ++i) expected.push_back(Alone(Prompt(5 + i % 11, i), 24, type, kv));
  for (bool chunked : {true, false}) {
    EngineOptions options = Options(kv);
    options.max_batch_tokens = chunked ? 16 : 512;  // 16 forces prompts to split across steps
    options.chunked_prefill = chunked;
    auto engine = Engine::Create(TinyModel(nullptr, type), options);
    ASSERT_TRUE(engine.ok());
    EXPECT_EQ((*engine)->kv_pool().layout().type, GetParam().expected_kv);
    std::vector<GenerateRequest> requests;
    for (int i = 0; i < 32; ++i) requests.push_back(Greedy(Prompt(5 + i % 11, i), 24));
    std::vector<Outcome> outcomes = RunAll(**engine, std::move(requests));
    for (int i = 0; i < 32; ++i) {
      EXPECT_EQ(outcomes[i].tokens, expected[i]) << "sequence " << i << " chunked " << chunked;
      EXPECT_EQ(outcomes[i].finish.reason, FinishReason::kLength);
      EXPECT_EQ(outcomes[i].finish.generated_tokens, 24);
    }
    EngineStats stats = (*engine)->Stats();
    EXPECT_GT(stats.mean_batch_sequences, 1.0);
    EXPECT_EQ(stats.pool.referenced_blocks, 0);  // everything returned
  }
}

// Auto KV is F32 for F32 weights and BF16 for the others.
INSTANTIATE_TEST_SUITE_P(
    WeightTypes, BatchInvarianceTest,
    testing::Values(InvarianceCase{WeightType::kF32, std::nullopt, KvType::kF32},
                    InvarianceCase{WeightType::kF32, KvType::kBF16, KvType::kBF16},
                    InvarianceCase{WeightType::kBF16, std::nullopt, KvType::kBF16},
                    InvarianceCase{WeightType::kBF16, KvType::kF32, KvType::kF32},
                    InvarianceCase{WeightType::kQ8_0, std::nullopt, KvType::kBF16}),
    [](const testing::TestParamInfo<InvarianceCase>& info) {
      return std::string(WeightTypeName(info.param.weights)) + "_kv_" +
             (info.param.kv ? std::string(KvTypeName(*info.param.kv)) : "auto");
    });

TEST(EngineTest, KvTypeOptionParsesAndResolves) {
  EXPECT_EQ(*ParseKvTypeOption("auto"), std::nullopt);
  EXPECT_EQ(*ParseKvTypeOption("f32"), KvType::kF32);
  EXPECT_EQ(*ParseKvTypeOption("bf16"), KvType::kBF16);
  absl::StatusOr<std::optional<KvType>> bad = ParseKvTypeOption("fp8");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("'fp8'"), std::string::npos);
  const EngineModel f32 = TinyModel(), q8 = TinyModel(nullptr, WeightType::kQ8_0);
  EXPECT_EQ(ResolveKvType(std::nullopt, f32.weights), KvType::kF32);
  EXPECT_EQ(ResolveKvType(std::nullopt, q8.weights), KvType::kBF16);
  EXPECT_EQ(ResolveKvType(KvType::kF32, q8.weights), KvType::kF32);
  EXPECT_EQ(ResolveKvType(KvType::kBF16, f32.weights), KvType::kBF16);
}

// The prefix cache and KV export/import, with each KV element type.
class KvTypeTest : public testing::TestWithParam<KvType> {};
INSTANTIATE_TEST_SUITE_P(KvTypes, KvTypeTest, testing::Values(KvType::kF32, KvType::kBF16),
                         [](const testing::TestParamInfo<KvType>& info) {
                           return std::string(KvTypeName(info.param));
                         });

TEST_P(KvTypeTest, PrefixCacheHitsDoNotChangeTheOutput) {
  const std::vector<int32_t> prompt = Prompt(19, 3);
  const std::vector<int32_t> expected = Alone(prompt, 12, WeightType::kF32, GetParam());
  auto engine = Engine::Create(TinyModel(), Options(GetParam()));
  ASSERT_TRUE(engine.ok());
  Outcome first = RunAll(**engine, {Greedy(prompt, 12)})[0];
  Outcome second = RunAll(**engine, {Greedy(prompt, 12)})[0];
  EXPECT_EQ(first.tokens, expected);
  EXPECT_EQ(second.tokens, expected);
  EXPECT_EQ(first.finish.cached_tokens, 0);
  EXPECT_EQ(second.finish.cached_tokens, 16);  // 4 full blocks; the last token is recomputed
  // A prompt sharing only the first 8 tokens hits 2 blocks.
  std::vector<int32_t> other = prompt;
  other[9] = (other[9] + 1) % 96;
  Outcome third = RunAll(**engine, {Greedy(other, 12)})[0];
  EXPECT_EQ(third.finish.cached_tokens, 8);
  EXPECT_EQ(third.tokens, Alone(other, 12, WeightType::kF32, GetParam()));
  EXPECT_GT((*engine)->Stats().prefix_hit_rate, 0.0);
  std::vector<KvEvent> events;
  ASSERT_TRUE((*engine)->kv_pool().EventsAfter(0, &events).ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].type, KvEvent::Type::kStored);
  EXPECT_EQ(events[0].block_hashes[0], HashKvBlocks(prompt, 4)[0]);
}

TEST(EngineTest, PreemptionByRecomputeKeepsOutputsExact) {
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < 6; ++i) expected.push_back(Alone(Prompt(9, i), 30));
  EngineOptions options = Options();
  options.enable_prefix_cache = false;
  // 40 blocks of 4 tokens: six sequences growing to 39 tokens (10 blocks each) cannot all fit.
  options.kv_budget_bytes = 40 * TinyConfig().num_layers * 2 * 2 * 4 * 8 * 4;
  auto engine = Engine::Create(TinyModel(), options);
  ASSERT_TRUE(engine.ok());
  ASSERT_EQ((*engine)->kv_pool().num_blocks(), 40);
  std::vector<GenerateRequest> requests;
  for (int i = 0; i < 6; ++i) requests.push_back(Greedy(Prompt(9, i), 30));
  std::vector<Outcome> outcomes = RunAll(**engine, std::move(requests));
  for (int i = 0; i < 6; ++i) EXPECT_EQ(outcomes[i].tokens, expected[i]) << i;
  EXPECT_GT((*engine)->Stats().preemptions, 0);
}

TEST(EngineTest, SeededSamplingIsReproducibleInAnyBatch) {
  auto sampled = [](int batch) {
    auto engine = Engine::Create(TinyModel(), Options());
    std::vector<GenerateRequest> requests;
    for (int i = 0; i < batch; ++i) {
      GenerateRequest r = Greedy(Prompt(7, i), 16);
      r.sampling = {.temperature = 0.9f, .top_p = 0.95f, .seed = kSeed};
      requests.push_back(std::move(r));
    }
    return RunAll(**engine, std::move(requests))[0].tokens;
  };
  EXPECT_EQ(sampled(1), sampled(8));
}

TEST(EngineTest, BadRequestsFailAloneAndOthersContinue) {
  auto engine = Engine::Create(TinyModel(), Options());
  ASSERT_TRUE(engine.ok());
  Engine& e = **engine;
  EXPECT_EQ(e.Submit(Greedy({}, 4)).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(e.Submit(Greedy({1, 200}, 4)).status().code(), absl::StatusCode::kInvalidArgument);
  auto too_long = e.Submit(Greedy(std::vector<int32_t>(256, 1), 4));
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("context"), std::string::npos);
  GenerateRequest bad_sampling = Greedy({1, 2}, 4);
  bad_sampling.sampling.top_p = 0;
  EXPECT_NE(e.Submit(bad_sampling).status().message().find("top_p"), std::string::npos);
  // 512 blocks of 4 tokens: a request that could grow past 2048... the context caps at 256, so
  // use a small pool instead.
  EngineOptions small = Options();
  small.kv_budget_bytes = 3 * TinyConfig().num_layers * 2 * 2 * 4 * 8 * 4;
  auto tiny_pool = Engine::Create(TinyModel(), small);
  ASSERT_TRUE(tiny_pool.ok());
  auto no_room = (*tiny_pool)->Submit(Greedy(Prompt(10, 1), 10));
  EXPECT_EQ(no_room.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(no_room.status().message().find("KV budget"), std::string::npos);
  // A good request still runs.
  EXPECT_EQ(RunAll(e, {Greedy(Prompt(5, 1), 5)})[0].tokens.size(), 5u);
}

TEST(EngineTest, NonFiniteLogitsEndOnlyThatRequest) {
  // Token 95's embedding is NaN: a prompt containing it poisons only its own sequence.
  auto engine = Engine::Create(
      TinyModel([](RandomModel& m) {
        float* row =
            const_cast<float*>(static_cast<const float*>(m.weights.token_embedding.data)) + 95 * 32;
        row[0] = NAN;
      }),
      Options());
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> poisoned = Prompt(6, 1);
  poisoned[2] = 95;
  std::vector<int32_t> clean = Prompt(6, 2);
  for (int32_t& t : clean) t = t == 95 ? 94 : t;
  GenerateRequest clean_request = Greedy(clean, 8);
  clean_request.stop_token_ids = {95};  // never feed the poisoned token back
  std::vector<Outcome> outcomes = RunAll(**engine, {Greedy(poisoned, 8), clean_request});
  EXPECT_EQ(outcomes[0].finish.reason, FinishReason::kError);
  EXPECT_NE(outcomes[0].finish.status.message().find("non-finite"), std::string::npos)
      << outcomes[0].finish.status;
  EXPECT_TRUE(outcomes[1].finish.status.ok()) << outcomes[1].finish.status;
  EXPECT_NE(outcomes[1].finish.reason, FinishReason::kError);
  EXPECT_FALSE(outcomes[1].tokens.empty());
}

// AddressSanitizer turns mlock into a no-op (GCC says so with __SANITIZE_ADDRESS__, clang with
// __has_feature).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kMlockIsNoOp = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kMlockIsNoOp = true;
#else
constexpr bool kMlockIsNoOp = false;
#endif
#else
constexpr bool kMlockIsNoOp = false;
#endif

// Kilobytes of this process's memory locked in RAM (VmLck).
int64_t LockedKb() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t kb = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::strncmp(line, "VmLck:", 6) == 0) kb = std::strtoll(line + 6, nullptr, 10);
  }
  std::fclose(f);
  return kb;
}

TEST(EngineTest, LockMemoryLocksWeightsAndKvForTheEnginesLifetime) {
  const int64_t before = LockedKb();
  if (before < 0) GTEST_SKIP() << "no VmLck in /proc/self/status";
  EngineOptions options = Options();
  options.lock_memory = true;
  const EngineModel model = TinyModel(nullptr, WeightType::kQ8_0);
  auto engine = Engine::Create(model, options);
  struct rlimit limit {};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &limit), 0);
  const bool privileged = geteuid() == 0;
  if (!engine.ok()) {
    // Only a process that may not lock this much fails, and it says how to allow it.
    ASSERT_FALSE(privileged) << engine.status();
    EXPECT_EQ(engine.status().code(), absl::StatusCode::kFailedPrecondition) << engine.status();
    EXPECT_NE(engine.status().message().find("RLIMIT_MEMLOCK"), std::string::npos);
    EXPECT_EQ(LockedKb(), before) << "a failed Create leaves nothing locked";
    return;
  }
  int64_t expected = (*engine)->kv_pool().storage_bytes();
  for (const auto& [data, bytes] : (*engine)->transformer().WeightRanges()) expected += bytes;
  if (!kMlockIsNoOp) {
    EXPECT_GE((LockedKb() - before) * 1024, expected);
  }
  // The engine works as usual with its memory locked.
  EXPECT_EQ(RunAll(**engine, {Greedy(Prompt(9, 1), 6)})[0].tokens,
            Alone(Prompt(9, 1), 6, WeightType::kQ8_0));
  engine->reset();
  EXPECT_EQ(LockedKb(), before) << "the engine unlocks what it locked";

  // A process allowed to lock less than the engine needs gets a clear error, not a partial
  // lock (root has CAP_IPC_LOCK, which the limit does not bind).
  if (privileged || kMlockIsNoOp) return;
  struct rlimit lowered = limit;
  lowered.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_MEMLOCK, &lowered), 0);
  auto refused = Engine::Create(model, options);
  setrlimit(RLIMIT_MEMLOCK, &limit);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition) << refused.status();
  EXPECT_EQ(LockedKb(), before);
}

TEST(EngineTest, StopTokensCallbackStopAndCancellation) {
  const std::vector<int32_t> prompt = Prompt(6, 4);
  const std::vector<int32_t> expected = Alone(prompt, 10);
  auto engine = Engine::Create(TinyModel(), Options());
  ASSERT_TRUE(engine.ok());
  GenerateRequest stop_id = Greedy(prompt, 10);
  stop_id.stop_token_ids = {expected[3]};
  Outcome outcome = RunAll(**engine, {stop_id})[0];
  EXPECT_EQ(outcome.finish.reason, FinishReason::kStop);
  const size_t first_stop =
      std::find(expected.begin(), expected.end(), expected[3]) - expected.begin();
  EXPECT_EQ(outcome.tokens, std::vector<int32_t>(expected.begin(), expected.begin() + first_stop));

  // on_token returning false stops at once.
  std::promise<FinishEvent> finished;
  GenerateRequest callback_stop = Greedy(prompt, 10);
  int seen = 0;
  callback_stop.on_token = [&](const TokenEvent&) { return ++seen < 2; };
  callback_stop.on_finish = [&](const FinishEvent& f) { finished.set_value(f); };
  ASSERT_TRUE((*engine)->Submit(std::move(callback_stop)).ok());
  FinishEvent f = finished.get_future().get();
  EXPECT_EQ(f.reason, FinishReason::kStop);
  EXPECT_EQ(f.generated_tokens, 2);

  // Cancellation ends a long request and frees its blocks. The third token's callback holds
  // the engine until Cancel has been called, so the cancel lands at a known step.
  std::promise<FinishEvent> cancelled;
  std::promise<void> third_token, cancel_sent;
  std::shared_future<void> sent = cancel_sent.get_future().share();
  GenerateRequest long_one = Greedy(prompt, 200);
  long_one.on_token = [&third_token, sent](const TokenEvent& t) {
    if (t.index == 2) {
      third_token.set_value();
      sent.wait();
    }
    return true;
  };
  long_one.on_finish = [&](const FinishEvent& f) { cancelled.set_value(f); };
  auto id = (*engine)->Submit(std::move(long_one));
  ASSERT_TRUE(id.ok());
  third_token.get_future().wait();
  (*engine)->Cancel(*id);
  cancel_sent.set_value();
  FinishEvent c = cancelled.get_future().get();
  EXPECT_EQ(c.reason, FinishReason::kCancelled);
  EXPECT_EQ(c.generated_tokens, 3);
  EXPECT_EQ((*engine)->kv_pool().Stats().referenced_blocks, 0);
}

// Prefill on one engine with layer-wise push into blocks reserved on another; the decode engine
// continues from the first token and must produce exactly the aggregated output.
TEST_P(KvTypeTest, DisaggregatedPrefillAndDecodeMatchAggregated) {
  const std::vector<int32_t> prompt = Prompt(14, 9);
  const std::vector<int32_t> expected = Alone(prompt, 20, WeightType::kF32, GetParam());
  auto prefill = Engine::Create(TinyModel(), Options(GetParam()));
  auto decode = Engine::Create(TinyModel(), Options(GetParam()));
  ASSERT_TRUE(prefill.ok() && decode.ok());
  // The spans moved are the layout's: 2 x kv heads x block size x head dim elements per layer.
  EXPECT_EQ((*decode)->kv_pool().layout().layer_block_bytes(),
            2 * 2 * 4 * 8 * KvTypeBytes(GetParam()));

  auto reservation = (*decode)->ReserveImport(prompt);
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_EQ(reservation->blocks.size(), 4u);
  EXPECT_EQ(reservation->first_block_to_fill, 0);
  BlockPool& source = (*prefill)->kv_pool();
  BlockPool& target = (*decode)->kv_pool();

  std::promise<FinishEvent> done;
  int32_t first_token = -1;
  int layer_calls = 0;
  GenerateRequest job = Greedy(prompt, 1);
  job.on_token = [&](const TokenEvent& t) {
    first_token = t.sampled.token;
    return true;
  };
  job.on_layer_kv = [&](const LayerKvEvent& e) {
    ++layer_calls;
    // Push this layer of every block the chunk touched.
    const int64_t first_block = e.start / 4, last_block = (e.start + e.count - 1) / 4;
    for (int64_t b = first_block; b <= last_block; ++b) {
      std::span<uint8_t> from = source.LayerSpan(e.blocks[b], e.layer);
      std::memcpy(target.LayerSpan(reservation->blocks[b], e.layer).data(), from.data(),
                  from.size());
    }
  };
  job.hold_kv = true;
  job.on_finish = [&](const FinishEvent& f) { done.set_value(f); };
  ASSERT_TRUE((*prefill)->Submit(std::move(job)).ok());
  FinishEvent f = done.get_future().get();
  EXPECT_EQ(f.blocks.size(), 4u);
  EXPECT_EQ(layer_calls, 2);
  (*prefill)->ReleaseHeldKv(f.request_id);
  ASSERT_EQ(first_token, expected[0]);

  // A wrong hash chain is refused.
  auto bad = (*decode)->ReserveImport(prompt);
  ASSERT_TRUE(bad.ok());
  std::vector<BlockHash> wrong = HashKvBlocks(prompt, 4);
  wrong[0] ^= 1;
  EXPECT_EQ((*decode)
                ->CompleteImport(bad->reservation_id, Greedy(prompt, 19), first_token, wrong)
                .status()
                .code(),
            absl::StatusCode::kDataLoss);

  Outcome rest;
  std::promise<void> finished;
  GenerateRequest continuation = Greedy(prompt, 20);
  continuation.on_token = [&](const TokenEvent& t) {
    rest.tokens.push_back(t.sampled.token);
    return true;
  };
  continuation.on_finish = [&](const FinishEvent& f) {
    rest.finish = f;
    finished.set_value();
  };
  auto id = (*decode)->CompleteImport(reservation->reservation_id, std::move(continuation),
                                      first_token, HashKvBlocks(prompt, 4));
  ASSERT_TRUE(id.ok()) << id.status();
  finished.get_future().wait();
  std::vector<int32_t> all = {first_token};
  all.insert(all.end(), rest.tokens.begin(), rest.tokens.end());
  EXPECT_EQ(all, expected);
  EXPECT_EQ(rest.finish.generated_tokens, 20);

  // A second import of the same prompt finds its full blocks cached locally (delta transfer).
  auto again = (*decode)->ReserveImport(prompt);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cached_tokens, 12);
  EXPECT_EQ(again->first_block_to_fill, 3);
  (*decode)->CancelImport(again->reservation_id);
  EXPECT_EQ(target.Stats().referenced_blocks, 0);

  // An import whose first token already ends it (max_tokens 1; a stop token) finishes at once,
  // generating nothing more and freeing its blocks.
  for (bool by_stop : {false, true}) {
    auto short_one = (*decode)->ReserveImport(prompt);
    ASSERT_TRUE(short_one.ok());
    GenerateRequest last = Greedy(prompt, by_stop ? 20 : 1);
    if (by_stop) last.stop_token_ids = {first_token};
    std::promise<FinishEvent> ended;
    int more = 0;
    last.on_token = [&](const TokenEvent&) { return ++more > 0; };
    last.on_finish = [&](const FinishEvent& f) { ended.set_value(f); };
    ASSERT_TRUE((*decode)
                    ->CompleteImport(short_one->reservation_id, std::move(last), first_token,
                                     HashKvBlocks(prompt, 4))
                    .ok());
    FinishEvent end = ended.get_future().get();
    EXPECT_EQ(end.reason, by_stop ? FinishReason::kStop : FinishReason::kLength);
    EXPECT_EQ(more, 0);
  }
  EXPECT_EQ(target.Stats().referenced_blocks, 0);
}

// An import needs the prompt's KV, not its logits (the first token comes with it): when every
// block of the prompt, the last token's included, is cached locally, the reservation says so
// and nothing is left to transfer; decoding from it matches the aggregated run.
TEST(EngineTest, ImportOfAFullyCachedPromptTransfersNothing) {
  const std::vector<int32_t> prompt = Prompt(16, 5);  // 4 full blocks
  const std::vector<int32_t> expected = Alone(prompt, 10);
  auto engine = Engine::Create(TinyModel(), Options());
  ASSERT_TRUE(engine.ok());
  RunAll(**engine, {Greedy(prompt, 1)});  // caches the prompt's 4 blocks

  auto reservation = (*engine)->ReserveImport(prompt);
  ASSERT_TRUE(reservation.ok()) << reservation.status();
  EXPECT_EQ(reservation->cached_tokens, 16);
  EXPECT_EQ(reservation->blocks.size(), 4u);
  EXPECT_EQ(reservation->first_block_to_fill, 4);

  std::vector<int32_t> tokens = {expected[0]};
  std::promise<void> finished;
  GenerateRequest continuation = Greedy(prompt, 10);
  continuation.on_token = [&](const TokenEvent& t) {
    tokens.push_back(t.sampled.token);
    return true;
  };
  continuation.on_finish = [&](const FinishEvent&) { finished.set_value(); };
  ASSERT_TRUE((*engine)
                  ->CompleteImport(reservation->reservation_id, std::move(continuation),
                                   expected[0], HashKvBlocks(prompt, 4))
                  .ok());
  finished.get_future().wait();
  EXPECT_EQ(tokens, expected);
  EXPECT_EQ((*engine)->kv_pool().Stats().referenced_blocks, 0);
}

}  // namespace
}  // namespace tandem::engine
