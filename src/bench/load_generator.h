// The load generator behind `tandem bench`: sends a workload (bench/workload.h) to any
// OpenAI-compatible server as streaming requests and records, per request, the time to first
// token, the gaps between tokens, the end-to-end latency, the token counts and the failure
// reason. All streams share one event loop thread, so thousands can be open at once.
//
//   LoadOptions options{.base_url = "http://127.0.0.1:8000", .model = "demo"};
//   options.workload.arrivals.rate = 4;                 // or options.max_concurrency
//   absl::StatusOr<LoadResult> result = RunLoad(options);
//   BenchSummary summary = Summarize(result->records, result->duration_s, slo, {50, 99});
//
// Prompts: with the completions endpoint each prompt is a list of token ids of exactly the
// wanted length (servers that accept token-id prompts, as OpenAI's and Tandem's do); with the
// chat endpoint it is text of about one token per word. Shared-prefix groups share their first
// prefix_tokens tokens (or words). Output lengths are requested with max_tokens and, with
// `ignore_eos`, the vLLM-style `ignore_eos` extension so every answer has exactly that length.
//
// Thread-safety: RunLoad is reentrant; `progress` runs on the caller's thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "bench/report.h"
#include "bench/workload.h"

namespace tandem::bench {

enum class Endpoint { kChat, kCompletions };

struct LoadOptions {
  std::string base_url = "http://127.0.0.1:8000";  // without /v1
  std::string model;
  std::string api_key;  // sent as Authorization: Bearer when set
  Endpoint endpoint = Endpoint::kCompletions;
  WorkloadSpec workload;
  std::vector<RequestSpec> trace;  // when workload.trace_path is set
  uint64_t seed = 1;
  int max_concurrency = 0;       // 0: no limit (rate only)
  uint64_t warmup_requests = 0;  // sent first, not recorded
  bool ignore_eos = true;
  absl::Duration request_timeout = absl::Minutes(10);
  int32_t vocab_size = 1000;  // token ids for completions prompts are drawn below this
  bool keep_text = false;     // keep generated text in the records
};

struct LoadProgress {
  uint64_t sent = 0;
  uint64_t done = 0;
  uint64_t failed = 0;
  double elapsed_s = 0;
};

struct LoadResult {
  std::vector<RequestRecord> records;
  double duration_s = 0;
};

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options,
                                   const std::function<void(const LoadProgress&)>& progress = {});

}  // namespace tandem::bench
