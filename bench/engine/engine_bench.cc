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

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
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

// Best-of-`passes` streaming read bandwidth (bytes/s) over `buffer` (far larger than the caches);
// each thread reads its own contiguous share, as the matrix kernels do.
double MeasureReadBandwidth(ThreadPool& pool, const std::vector<float>& buffer, int passes) {
  const auto floats = static_cast<int64_t>(buffer.size());
  const int64_t shares = pool.num_threads();
  double best = 0;
  for (int round = 0; round < passes; ++round) {
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

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  if (n == 0) return 0;
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

// The baselines' process: forked before the model is loaded, it holds the 1 GiB read buffer and
// answers one byte per request with one double: 'b' the read bandwidth (best of 2 passes),
// 'g' the SGEMM peak; it exits when the pipe closes. Requests block this process, so the two
// never run at the same time.
class Baselines {
 public:
  bool Start(int threads) {
    // A failed process shows as a failed write, not as this process killed by SIGPIPE.
    std::signal(SIGPIPE, SIG_IGN);
    int requests[2], answers[2];
    if (pipe(requests) != 0) return false;
    if (pipe(answers) != 0) return false;
    child_ = fork();
    if (child_ < 0) return false;
    if (child_ == 0) {
      close(requests[1]);
      close(answers[0]);
      ThreadPool pool(threads);
      const std::vector<float> buffer(int64_t{256} << 20, 1.0f);
      char request;
      while (read(requests[0], &request, 1) == 1) {
        const double value = request == 'g' ? MeasureGemmPeak(threads)
                                            : MeasureReadBandwidth(pool, buffer, /*passes=*/2);
        if (write(answers[1], &value, sizeof(value)) != sizeof(value)) _exit(1);
      }
      _exit(0);
    }
    close(requests[0]);
    close(answers[1]);
    request_fd_ = requests[1];
    answer_fd_ = answers[0];
    return true;
  }
  // The measured value, or 0 when the process failed.
  double Request(char what) {
    double value = 0;
    if (write(request_fd_, &what, 1) != 1) return 0;
    if (read(answer_fd_, &value, sizeof(value)) != sizeof(value)) return 0;
    return value;
  }
  ~Baselines() {
    if (child_ <= 0) return;
    close(request_fd_);
    close(answer_fd_);
    int status = 0;
    waitpid(child_, &status, 0);
  }

 private:
  pid_t child_ = -1;
  int request_fd_ = -1, answer_fd_ = -1;
};

constexpr int64_t kDecodeWindow = 8;

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
  int threads = 1, sequences = 32, rounds = 3;
  app.add_option("--shape", shape, "small | qwen2.5-0.5b (random weights in memory)");
  app.add_option("--dtype", dtype, "f32 | bf16 | q8_0 (with --shape)");
  std::string model_path;
  app.add_option("--model", model_path, "A model file (e.g. from tandem model create) instead");
  app.add_option("--threads", threads, "engine threads");
  app.add_option("--sequences", sequences, "concurrent sequences for the batching run")
      ->check(CLI::Range(1, 4096));
  app.add_option("--rounds", rounds, "batch-1 / batched pairs for the batching speedup")
      ->check(CLI::Range(1, 100));
  std::string kv_dtype = "auto";
  app.add_option("--kv-dtype", kv_dtype, "KV cache element type: auto | f32 | bf16");
  bool mlock = false;
  app.add_flag("--mlock", mlock, "Lock the weights and the KV cache in RAM (EngineOptions)");
  CLI11_PARSE(app, argc, argv);
  const auto kv_type = ParseKvTypeOption(kv_dtype);
  if (!kv_type.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", kv_type.status().ToString().c_str());
    return 2;
  }

  // The baselines run in a child process, so that their buffers stay out of this process's peak
  // RSS, which answers requests over a pipe: the read bandwidth is sampled again next to every
  // decode window (see below), because this host's bandwidth moves by 30 % within seconds.
  Baselines baselines;
  if (!baselines.Start(threads)) {
    std::fprintf(stderr, "engine_bench: baseline process failed\n");
    return 1;
  }
  const double gemm_peak = baselines.Request('g');
  if (gemm_peak <= 0) {
    std::fprintf(stderr, "engine_bench: baseline measurement failed\n");
    return 1;
  }

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
  // at least what the 512-token prefill below allocates (with room for decode_tokens more), in
  // the KV element type the engine will use.
  const KvLayout layout = {.num_layers = (int)config.num_layers,
                           .num_kv_heads = (int)config.num_kv_heads,
                           .head_dim = (int)config.head_dim,
                           .block_size = block_size,
                           .type = ResolveKvType(*kv_type, model.weights)};
  const int64_t kv_blocks =
      std::max<int64_t>(sequences * BlocksFor(prompt + decode_tokens, block_size),
                        BlocksFor(512 + decode_tokens + 1, block_size));
  const int64_t kv_budget = kv_blocks * layout.block_bytes();

  auto engine_or = Engine::Create(model, {.threads = threads,
                                          .block_size = block_size,
                                          .kv_type = layout.type,
                                          .kv_budget_bytes = kv_budget,
                                          .enable_prefix_cache = false,
                                          .max_batch_tokens = 512,
                                          .lock_memory = mlock});
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

  // Decode at batch 1 after a 64-token prompt: 64 timed steps in windows of 8. Before each
  // window the baseline process samples the read bandwidth (best of 2 passes) and one untimed
  // step brings the weights back into the caches that pass evicted; a window's ratio is its
  // rate against the roofline of the mean of the samples before and after it. The reported
  // ratio is the median over windows, so a ratio never compares moments seconds apart.
  pool.Release(blocks);
  const int64_t decode_windows = decode_tokens / kDecodeWindow;
  blocks =
      std::move(pool.Allocate(BlocksFor(prompt + decode_tokens + decode_windows + 1, block_size)))
          .value();
  std::vector<int32_t> short_prompt = Tokens(prompt, config.vocab_size, 7);
  SequenceChunk chunk{.tokens = short_prompt, .start = 0, .blocks = blocks};
  if (!transformer.Forward({&chunk, 1}, pool, logits.data()).ok()) return 1;
  int32_t token = 1;
  int64_t position = prompt;
  const auto step = [&] {
    SequenceChunk next{.tokens = std::span(&token, 1), .start = position++, .blocks = blocks};
    if (absl::Status status = transformer.Forward({&next, 1}, pool, logits.data()); !status.ok()) {
      std::fprintf(stderr, "engine_bench: decode step: %s\n", status.ToString().c_str());
      return false;
    }
    token = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    return true;
  };
  const KvLayout kv_layout = pool.layout();
  // A bandwidth sample, or 0 (and a message) when the baselines process failed.
  const auto sample = [&] {
    const double value = baselines.Request('b');
    if (value <= 0) std::fprintf(stderr, "engine_bench: the bandwidth sample failed\n");
    return value;
  };
  std::vector<double> samples = {sample()};
  if (samples.back() <= 0) return 1;
  std::vector<double> window_ratios;
  double decode_total = 0, kv_positions_read = 0;
  for (int64_t w = 0; w < decode_windows; ++w) {
    if (!step()) return 1;  // untimed: refills the caches
    const int64_t first_position = position;
    const double start = Now();
    for (int64_t i = 0; i < kDecodeWindow; ++i) {
      if (!step()) return 1;
    }
    const double seconds = Now() - start;
    samples.push_back(sample());
    if (samples.back() <= 0) return 1;
    // Each step reads the weights and the KV of every position up to its own.
    const double mean_context = first_position + (kDecodeWindow - 1) / 2.0 + 1;
    const double bytes_per_token =
        transformer.weight_bytes() + mean_context * kv_layout.token_bytes();
    const double bandwidth = (samples[samples.size() - 2] + samples.back()) / 2;
    window_ratios.push_back(kDecodeWindow / seconds / (bandwidth / bytes_per_token));
    decode_total += seconds;
    kv_positions_read += kDecodeWindow * mean_context;
  }
  TraceMemory("decode");
  pool.Release(blocks);
  const double decode_rate = decode_windows * kDecodeWindow / decode_total;
  const double bandwidth = Median(samples);
  const double bytes_per_token = transformer.weight_bytes() + kv_positions_read /
                                                                  (decode_windows * kDecodeWindow) *
                                                                  kv_layout.token_bytes();
  const double roofline_rate = bandwidth / bytes_per_token;

  // Continuous batching through the engine loop: batch 1 and then `sequences` at once, in
  // `rounds` back-to-back pairs; the speedup is the median of the pairs' ratios (a pair runs
  // within seconds, the rounds apart), the rates the medians of their runs.
  std::vector<double> batch1_rates, batched_rates, speedups;
  for (int round = 0; round < rounds; ++round) {
    batch1_rates.push_back(BatchedDecodeRate(engine, 1, prompt, decode_tokens));
    TraceMemory("batch 1");
    batched_rates.push_back(BatchedDecodeRate(engine, sequences, prompt, decode_tokens));
    TraceMemory("batch 32");
    speedups.push_back(batched_rates.back() / std::max(1e-9, batch1_rates.back()));
  }
  const auto [min_ratio, max_ratio] =
      std::minmax_element(window_ratios.begin(), window_ratios.end());
  const auto [min_sample, max_sample] = std::minmax_element(samples.begin(), samples.end());

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
      {"decode_roofline_ratio", Median(window_ratios)},
      {"decode_roofline_ratio_min", *min_ratio},
      {"decode_roofline_ratio_max", *max_ratio},
      {"decode_windows", decode_windows},
      {"read_bandwidth_min_gbs", *min_sample / 1e9},
      {"read_bandwidth_max_gbs", *max_sample / 1e9},
      {"prefill_512_tokens_per_s", prefill_rate},
      {"prefill_gflops", prefill_flops / prefill_seconds / 1e9},
      {"prefill_peak_ratio", prefill_ratio},
      {"batch1_decode_tokens_per_s", Median(batch1_rates)},
      {"batched_decode_tokens_per_s", Median(batched_rates)},
      {"batched_sequences", sequences},
      {"batching_rounds", rounds},
      {"batching_speedup", Median(speedups)},
      {"batching_speedups", speedups},
      {"weight_bytes", weight_bytes},
      {"kv_budget_bytes", kv_budget},
      {"kv_dtype", std::string(KvTypeName(layout.type))},
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
