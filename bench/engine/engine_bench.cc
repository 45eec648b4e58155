// Engine benchmarks: decode and prefill speed against roofline baselines measured in the same
// run, continuous-batching throughput, and peak memory against weights + KV budget.
//
//   engine_bench --shape qwen2.5-0.5b --dtype bf16 --threads 2
//   engine_bench --model model.gguf --threads 1
//
// Prints one JSON object per run (one configuration per process, so peak RSS is its own).
#include <immintrin.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/cpu_features.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/model_loader.h"
#include "engine/random_model.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "nlohmann/json.hpp"

namespace tandem::engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Sums `n` floats with four independent vector accumulators: a pure streaming read.
__attribute__((target("avx2,fma"))) float SumFloats(const float* data, int64_t n) {
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  for (int64_t i = 0; i + 32 <= n; i += 32) {
    for (int k = 0; k < 4; ++k) acc[k] = _mm256_add_ps(acc[k], _mm256_loadu_ps(data + i + 8 * k));
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes,
                  _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
  float sum = 0;
  for (float lane : lanes) sum += lane;
  return sum;
}

// Best-of-5 streaming read bandwidth (bytes/s) over 1 GiB, far larger than the caches; each
// thread reads its own contiguous share, as the matrix kernels do.
double MeasureReadBandwidth(ThreadPool& pool) {
  const int64_t floats = int64_t{256} << 20;
  std::vector<float> buffer(floats, 1.0f);
  const int64_t shares = pool.num_threads();
  double best = 0;
  for (int round = 0; round < 5; ++round) {
    std::vector<float> partial(shares * 16, 0);
    const double start = Now();
    pool.ParallelFor(shares, 1, [&](int64_t begin, int64_t end) {
      for (int64_t s = begin; s < end; ++s) {
        partial[s * 16] = SumFloats(buffer.data() + s * (floats / shares), floats / shares);
      }
    });
    const double seconds = Now() - start;
    best = std::max(best, floats * 4.0 / seconds);
    if (partial[0] < 0) std::printf("impossible\n");
  }
  return best;
}

// Best-of-3 OpenBLAS SGEMM FLOP/s on a 2048^3 product.
double MeasureGemmPeak(int threads) {
  const int64_t n = 2048;
  std::vector<float> a(n * n, 0.5f), b(n * n, 0.25f), c(n * n);
  SgemmPeakProbe(threads, n, n, n, a.data(), b.data(), c.data());  // warm-up
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const double start = Now();
    SgemmPeakProbe(threads, n, n, n, a.data(), b.data(), c.data());
    best = std::max(best, 2.0 * n * n * n / (Now() - start));
  }
  return best;
}

std::vector<int32_t> Tokens(int64_t count, int64_t vocab, int salt) {
  std::vector<int32_t> tokens(count);
  for (int64_t i = 0; i < count; ++i)
    tokens[i] = static_cast<int32_t>((i * 7919 + salt * 104729) % vocab);
  return tokens;
}

// Resident memory by kind (MiB), on stderr when TANDEM_BENCH_MEMORY is set: where peak RSS
// comes from.
void TraceMemory(const char* stage) {
  if (getenv("TANDEM_BENCH_MEMORY") == nullptr) return;
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return;
  char line[256];
  std::string fields;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    std::string text(line);
    for (const char* key : {"VmHWM", "VmRSS", "RssAnon", "RssFile"}) {
      if (text.rfind(key, 0) == 0) fields += " " + text.substr(0, text.size() - 1);
    }
  }
  std::fclose(f);
  const struct mallinfo2 heap = mallinfo2();
  std::fprintf(stderr, "memory %-16s%s heap-in-use: %zu kB heap-mmapped: %zu kB\n", stage,
               fields.c_str(), (heap.uordblks + heap.hblkhd) >> 10, heap.hblkhd >> 10);
}

int64_t MatmulParams(const TransformerConfig& c) {
  const int64_t q = c.num_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  return c.num_layers * (c.hidden_size * (q + 2 * kv) + q * c.hidden_size +
                         3 * c.hidden_size * c.intermediate_size);
}

// Decode tokens/s over `sequences` concurrent requests through the engine (continuous batching),
// counted from the moment every sequence has its first token.
double BatchedDecodeRate(Engine& engine, int sequences, int64_t prompt, int64_t tokens) {
  std::mutex mutex;
  int with_first = 0;
  double window_start = 0, last = 0;
  int64_t after_start = 0;
  std::vector<std::promise<void>> done(sequences);
  for (int s = 0; s < sequences; ++s) {
    GenerateRequest request;
    request.prompt = Tokens(prompt, engine.model_config().vocab_size, s + 1);
    request.max_tokens = tokens;
    request.sampling.temperature = 0;
    request.on_token = [&, first = true](const TokenEvent&) mutable {
      std::lock_guard<std::mutex> lock(mutex);
      const double now = Now();
      if (first) {
        first = false;
        if (++with_first == sequences) window_start = now;
      } else if (with_first == sequences) {
        ++after_start;
        last = now;
      }
      return true;
    };
    request.on_finish = [&done, s](const FinishEvent&) { done[s].set_value(); };
    if (!engine.Submit(std::move(request)).ok()) return 0;
  }
  for (auto& d : done) d.get_future().wait();
  return after_start / std::max(1e-9, last - window_start);
}

int Run(int argc, char** argv) {
  CLI::App app("Tandem engine benchmark");
  std::string shape = "small", dtype = "bf16";
  int threads = 1, sequences = 32;
  app.add_option("--shape", shape, "small | qwen2.5-0.5b (random weights in memory)");
  app.add_option("--dtype", dtype, "f32 | bf16 | q8_0 (with --shape)");
  std::string model_path;
  app.add_option("--model", model_path, "A model file (e.g. from tandem model create) instead");
  app.add_option("--threads", threads, "engine threads");
  app.add_option("--sequences", sequences, "concurrent sequences for the batching run");
  CLI11_PARSE(app, argc, argv);

  // The baselines run in a child process so their buffers stay out of this process's peak RSS.
  double baselines[2] = {0, 0};
  {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    const pid_t child = fork();
    if (child == 0) {
      ThreadPool bandwidth_pool(threads);
      double measured[2] = {MeasureReadBandwidth(bandwidth_pool), MeasureGemmPeak(threads)};
      ssize_t written = write(fds[1], measured, sizeof(measured));
      _exit(written == sizeof(measured) ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], baselines, sizeof(baselines));
    close(fds[0]);
    int child_status = 0;
    waitpid(child, &child_status, 0);
    if (got != sizeof(baselines)) {
      std::fprintf(stderr, "engine_bench: baseline measurement failed\n");
      return 1;
    }
  }
  const double bandwidth = baselines[0];
  const double gemm_peak = baselines[1];

  // What the process holds before any model memory (binary, libraries, runtime), so the report
  // can show the engine's own footprint next to the raw peak.
  struct rusage startup_usage;
  getrusage(RUSAGE_SELF, &startup_usage);
  const double startup_rss = startup_usage.ru_maxrss * 1024.0;

  TraceMemory("startup");
  EngineModel model;
  if (!model_path.empty()) {
    // The weights only: the engine computes on token ids, and a tokenizer (LoadEngineModel
    // builds one for the serving path) would put ~45 MB of heap for a 152k vocabulary into
    // this process's peak, none of it the engine's.
    auto file = model::LoadModel(model_path);
    if (!file.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", file.status().ToString().c_str());
      return 1;
    }
    auto loaded = EngineModelFromModel(std::move(file).value());
    if (!loaded.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", loaded.status().ToString().c_str());
      return 1;
    }
    model = std::move(loaded).value();
    model.name = shape;
  } else {
    auto type = ParseWeightType(dtype);
    if (!type.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", type.status().ToString().c_str());
      return 2;
    }
    auto preset = model::PresetConfig(shape);
    if (!preset.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", preset.status().ToString().c_str());
      return 2;
    }
    auto random = MakeRandomModel(EngineConfig(*preset), *type, /*seed=*/1,
                                  /*untied_head=*/!preset->tie_word_embeddings);
    if (!random.ok()) {
      std::fprintf(stderr, "engine_bench: %s\n", random.status().ToString().c_str());
      return 1;
    }
    std::shared_ptr<RandomModel> owned = std::move(random).value();
    model = {.name = shape, .config = owned->config, .weights = owned->weights, .keepalive = owned};
  }
  TraceMemory("model loaded");
  const TransformerConfig config = model.config;
  const int64_t prompt = 64, decode_tokens = 64;
  const int block_size = 16;
  // KV budget: exactly what the batching run fills (prompt + generated for every sequence), and
  // at least what the 512-token prefill below allocates (with room for decode_tokens more).
  const KvLayout layout = {.num_layers = (int)config.num_layers,
                           .num_kv_heads = (int)config.num_kv_heads,
                           .head_dim = (int)config.head_dim,
                           .block_size = block_size};
  const int64_t kv_blocks =
      std::max<int64_t>(sequences * BlocksFor(prompt + decode_tokens, block_size),
                        BlocksFor(512 + decode_tokens + 1, block_size));
  const int64_t kv_budget = kv_blocks * layout.block_bytes();

  auto engine_or = Engine::Create(model, {.threads = threads,
                                          .block_size = block_size,
                                          .kv_budget_bytes = kv_budget,
                                          .enable_prefix_cache = false,
                                          .max_batch_tokens = 512});
  if (!engine_or.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", engine_or.status().ToString().c_str());
    return 1;
  }
  Engine& engine = **engine_or;
  TraceMemory("engine created");
  Transformer& transformer = engine.transformer();
  BlockPool& pool = engine.kv_pool();

  // Prefill of a 512-token prompt in one step (best of 2), on the engine's own pool while idle.
  std::vector<int32_t> long_prompt = Tokens(512, config.vocab_size, 99);
  std::vector<BlockId> blocks =
      std::move(pool.Allocate(BlocksFor(512 + decode_tokens + 1, block_size))).value();
  std::vector<float> logits(config.vocab_size);
  double prefill_seconds = 1e9;
  for (int round = 0; round < 2; ++round) {
    SequenceChunk chunk{.tokens = long_prompt, .start = 0, .blocks = blocks};
    const double start = Now();
    if (!transformer.Forward({&chunk, 1}, pool, logits.data()).ok()) return 1;
    prefill_seconds = std::min(prefill_seconds, Now() - start);
  }
  TraceMemory("prefill");
  const double attention_flops =
      2.0 * 2 * config.num_layers * config.num_heads * config.head_dim * (512.0 * 513 / 2);
  const double prefill_flops = 2.0 * MatmulParams(config) * 512 + attention_flops +
                               2.0 * config.vocab_size * config.hidden_size;
  const double prefill_rate = 512 / prefill_seconds;
  const double prefill_ratio = prefill_flops / prefill_seconds / gemm_peak;

  // Decode at batch 1 with a 64-token context, timed over 64 steps.
  pool.Release(blocks);
  blocks = std::move(pool.Allocate(BlocksFor(prompt + decode_tokens + 1, block_size))).value();
  std::vector<int32_t> short_prompt = Tokens(prompt, config.vocab_size, 7);
  SequenceChunk chunk{.tokens = short_prompt, .start = 0, .blocks = blocks};
  if (!transformer.Forward({&chunk, 1}, pool, logits.data()).ok()) return 1;
  int32_t token = 1;
  const double decode_start = Now();
  for (int64_t step = 0; step < decode_tokens; ++step) {
    SequenceChunk next{.tokens = std::span(&token, 1), .start = prompt + step, .blocks = blocks};
    if (!transformer.Forward({&next, 1}, pool, logits.data()).ok()) return 1;
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  const double decode_seconds = (Now() - decode_start) / decode_tokens;
  TraceMemory("decode");
  pool.Release(blocks);
  const double mean_context = prompt + decode_tokens / 2.0;
  const double bytes_per_token = transformer.weight_bytes() + mean_context * layout.token_bytes();
  const double decode_rate = 1 / decode_seconds;
  const double roofline_rate = bandwidth / bytes_per_token;

  // Continuous batching through the engine loop.
  const double batch1 = BatchedDecodeRate(engine, 1, prompt, decode_tokens);
  TraceMemory("batch 1");
  const double batched = BatchedDecodeRate(engine, sequences, prompt, decode_tokens);
  TraceMemory("batch 32");

  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  const double peak_rss = usage.ru_maxrss * 1024.0;
  int64_t weight_bytes = transformer.weight_bytes();
  if (model.weights.lm_head.empty() == false) weight_bytes += model.weights.token_embedding.bytes();
  // Norms and biases are small; the embedding is counted once when tied.

  nlohmann::json out = {
      {"model", model.name},
      {"source", model_path.empty() ? "random weights in memory" : "model file"},
      {"dtype", std::string(WeightTypeName(model.weights.layers[0].wq.type))},
      {"threads", threads},
      {"isa", EnabledIsaPaths().front()},
      {"read_bandwidth_gbs", bandwidth / 1e9},
      {"gemm_peak_gflops", gemm_peak / 1e9},
      {"decode_tokens_per_s", decode_rate},
      {"decode_roofline_tokens_per_s", roofline_rate},
      {"decode_roofline_ratio", decode_rate / roofline_rate},
      {"prefill_512_tokens_per_s", prefill_rate},
      {"prefill_gflops", prefill_flops / prefill_seconds / 1e9},
      {"prefill_peak_ratio", prefill_ratio},
      {"batch1_decode_tokens_per_s", batch1},
      {"batched_decode_tokens_per_s", batched},
      {"batched_sequences", sequences},
      {"batching_speedup", batched / std::max(1e-9, batch1)},
      {"weight_bytes", weight_bytes},
      {"kv_budget_bytes", kv_budget},
      {"peak_rss_bytes", peak_rss},
      {"rss_ratio", peak_rss / double(weight_bytes + kv_budget)},
      {"startup_rss_bytes", startup_rss},
      {"rss_ratio_above_startup", (peak_rss - startup_rss) / double(weight_bytes + kv_budget)},
  };
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace
}  // namespace tandem::engine

int main(int argc, char** argv) { return tandem::engine::Run(argc, argv); }
