#include "engine/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "core/status.h"

namespace tandem::engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::vector<int32_t> Tokens(int64_t count, int64_t vocab, int64_t salt) {
  std::vector<int32_t> tokens(count);
  for (int64_t i = 0; i < count; ++i) {
    tokens[i] = static_cast<int32_t>((i * 7919 + salt * 104729 + 17) % vocab);
  }
  return tokens;
}

int64_t ParameterCount(const TransformerWeights& w) {
  auto elements = [](const WeightMatrix& m) { return m.rows * m.cols; };
  int64_t total = elements(w.token_embedding) + elements(w.output_norm) + elements(w.lm_head);
  for (const LayerWeights& l : w.layers) {
    for (const WeightMatrix* m :
         {&l.attn_norm, &l.wq, &l.wk, &l.wv, &l.wo, &l.q_bias, &l.k_bias, &l.v_bias, &l.q_norm,
          &l.k_norm, &l.ffn_norm, &l.w_gate, &l.w_up, &l.w_down}) {
      total += elements(*m);
    }
  }
  return total;
}

}  // namespace

std::string CpuDescription() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, name;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("model name", 0) == 0) {
      name = line.substr(line.find(':') + 2);
      break;
    }
  }
  if (name.empty()) name = "unknown CPU";
  return absl::StrCat(name, ", ", std::thread::hardware_concurrency(), " cores");
}

absl::StatusOr<LatencyProfile> MeasureLatencyProfile(const EngineModel& model,
                                                     const ProfileOptions& options) {
  if (options.repeats < 1) return absl::InvalidArgumentError("repeats must be at least 1");
  const TransformerConfig& config = model.config;
  ThreadPool pool(options.threads);
  TANDEM_ASSIGN_OR_RETURN(auto transformer, Transformer::Create(config, model.weights, &pool,
                                                                model.release_weight_pages));
  const int bs = options.block_size;
  const int64_t context = config.max_context;

  // The pool must hold the largest decode batch at the largest context, and the longest prefill.
  int64_t largest_prefill = 0;
  for (int64_t tokens : options.prefill_tokens) largest_prefill = std::max(largest_prefill, tokens);
  for (auto [cached, uncached] : options.prefix_points) {
    largest_prefill = std::max(largest_prefill, cached + uncached);
  }
  largest_prefill = std::min(largest_prefill, context - 1);
  int64_t decode_blocks = 0;
  for (int64_t batch : options.batch_sizes) {
    for (int64_t ctx : options.contexts) {
      decode_blocks =
          std::max(decode_blocks, batch * BlocksFor(std::min(ctx, context - 1) + 1, bs));
    }
  }
  const int64_t blocks = std::max(decode_blocks, BlocksFor(largest_prefill + 1, bs));
  // The KV element type the engine would use: attention's cost depends on it.
  const KvLayout layout = transformer->kv_layout(bs, ResolveKvType(options.kv_type, model.weights));
  TANDEM_ASSIGN_OR_RETURN(auto kv, BlockPool::Create({.layout = layout,
                                                      .budget_bytes = blocks * layout.block_bytes(),
                                                      .enable_prefix_cache = false}));
  TANDEM_ASSIGN_OR_RETURN(std::vector<BlockId> table, kv->Allocate(blocks));
  // Zeroed KV: attention costs the same whatever the values, so decode points need no prefill.
  std::memset(kv->BlockData(0), 0, kv->storage_bytes());
  std::vector<float> logits(config.vocab_size *
                            std::max<int64_t>(1, *std::max_element(options.batch_sizes.begin(),
                                                                   options.batch_sizes.end())));
  auto report = [&](const std::string& line) {
    if (options.progress) options.progress(line);
  };

  // Runs positions [start, start + count) of one sequence in engine-sized chunks.
  auto prefill = [&](int64_t start, int64_t count, int64_t salt) -> absl::StatusOr<double> {
    std::vector<int32_t> tokens = Tokens(count, config.vocab_size, salt);
    const double begin = Now();
    for (int64_t done = 0; done < count; done += options.max_batch_tokens) {
      const int64_t n = std::min(options.max_batch_tokens, count - done);
      SequenceChunk chunk{.tokens = std::span(tokens).subspan(done, n),
                          .start = start + done,
                          .blocks = table,
                          .logits = done + n == count ? SequenceChunk::Logits::kLast
                                                      : SequenceChunk::Logits::kNone};
      TANDEM_RETURN_IF_ERROR(transformer->Forward({&chunk, 1}, *kv, logits.data()));
    }
    return Now() - begin;
  };

  LatencyProfile profile;
  profile.model = {.name = model.name.empty() ? "model" : model.name,
                   .layers = config.num_layers,
                   .hidden_size = config.hidden_size,
                   .attention_heads = config.num_heads,
                   .kv_heads = config.num_kv_heads,
                   .head_dim = config.head_dim,
                   .vocab_size = config.vocab_size,
                   .parameters = ParameterCount(model.weights)};
  profile.dtype = std::string(WeightTypeName(model.weights.layers.front().wq.type));
  profile.kv_dtype = std::string(KvTypeName(layout.type));
  profile.hardware = {.description = CpuDescription(),
                      .device = "cpu",
                      .threads = pool.num_threads(),
                      .tensor_parallel = 1};
  profile.measured_at = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());

  TANDEM_RETURN_IF_ERROR(prefill(0, std::min<int64_t>(16, context - 1), 0).status());  // warm-up
  std::vector<int64_t> lengths = options.prefill_tokens;
  std::sort(lengths.begin(), lengths.end());
  lengths.erase(std::unique(lengths.begin(), lengths.end()), lengths.end());
  for (int64_t tokens : lengths) {
    if (tokens < 1 || tokens >= context) continue;
    std::vector<double> runs;
    for (int r = 0; r < options.repeats; ++r) {
      TANDEM_ASSIGN_OR_RETURN(double seconds, prefill(0, tokens, r + 1));
      runs.push_back(seconds);
    }
    profile.prefill.push_back(
        {.uncached_tokens = tokens, .cached_tokens = 0, .seconds = Median(runs)});
    report(absl::StrFormat("prefill %d tokens: %.4f s", tokens, profile.prefill.back().seconds));
  }
  for (auto [cached, uncached] : options.prefix_points) {
    if (cached < 0 || uncached < 1 || cached + uncached >= context) continue;
    // The prefix's KV is already in the blocks (any values do); only the new tokens are timed.
    std::vector<double> runs;
    for (int r = 0; r < options.repeats; ++r) {
      TANDEM_ASSIGN_OR_RETURN(double seconds, prefill(cached, uncached, r + 1));
      runs.push_back(seconds);
    }
    profile.prefill.push_back(
        {.uncached_tokens = uncached, .cached_tokens = cached, .seconds = Median(runs)});
    report(absl::StrFormat("prefill %d tokens after %d cached: %.4f s", uncached, cached,
                           profile.prefill.back().seconds));
  }

  std::vector<int32_t> step_tokens;
  std::vector<SequenceChunk> batch;
  for (int64_t batch_size : options.batch_sizes) {
    for (int64_t ctx : options.contexts) {
      if (batch_size < 1) continue;
      const int64_t position = std::min(ctx, context - 1);
      const int64_t per_sequence = BlocksFor(position + 1, bs);
      step_tokens.assign(batch_size, 1);
      batch.clear();
      for (int64_t s = 0; s < batch_size; ++s) {
        batch.push_back({.tokens = std::span(step_tokens).subspan(s, 1),
                         .start = position,
                         .blocks = std::span(table).subspan(s * per_sequence, per_sequence)});
      }
      std::vector<double> runs;
      TANDEM_RETURN_IF_ERROR(transformer->Forward(batch, *kv, logits.data()));  // warm-up
      for (int r = 0; r < options.repeats; ++r) {
        const double begin = Now();
        TANDEM_RETURN_IF_ERROR(transformer->Forward(batch, *kv, logits.data()));
        runs.push_back(Now() - begin);
      }
      profile.decode.push_back({.batch_size = batch_size,
                                .context_tokens = batch_size * (position + 1),
                                .step_seconds = Median(runs)});
      report(absl::StrFormat("decode batch %d, context %d each: %.5f s/step", batch_size,
                             position + 1, profile.decode.back().step_seconds));
    }
  }
  kv->Release(table);
  TANDEM_RETURN_IF_ERROR(ValidateLatencyProfile(profile));
  return profile;
}

}  // namespace tandem::engine
