// The inference engine a worker runs: it owns the model's forward pass, the paged KV pool and one
// engine thread that runs the continuous-batching loop (plan a step with PlanStep, allocate
// blocks, run one batched forward pass, sample, stream tokens, commit full blocks to the prefix
// cache, free what finished).
//
//   TANDEM_ASSIGN_OR_RETURN(auto engine, Engine::Create(std::move(model), {.threads = 2,
//                                                        .kv_budget_bytes = 1 << 30}));
//   GenerateRequest request;
//   request.prompt = tokenizer.Encode(text, true, false);
//   request.max_tokens = 128;
//   request.stop_token_ids = {tokenizer.eos_id()};
//   request.on_token = [](const TokenEvent& t) { Print(t.sampled.token); return true; };
//   request.on_finish = [](const FinishEvent& f) { Done(f.status); };
//   TANDEM_ASSIGN_OR_RETURN(uint64_t id, engine->Submit(std::move(request)));
//   ...
//   engine->Cancel(id);  // frees its blocks at the next step boundary
//
// Disaggregation hooks (used by the KV transfer layer):
//   - prefill side: a request with `on_layer_kv` set is called back after each layer's keys and
//     values of each prefill chunk are in its blocks (layer-wise push); with `hold_kv` the
//     sequence's blocks stay referenced after it finishes (FinishEvent::blocks) until
//     ReleaseHeldKv(id), so an asynchronous sender can still read them.
//   - decode side: ReserveImport(prompt) takes references to the locally cached prefix and
//     reserves fresh blocks for the rest (the spans the sender writes, by block and by layer);
//     CompleteImport(reservation, request, first_token) verifies the sender's hash chain,
//     publishes the blocks to the prefix cache and joins the sequence to the batch, continuing
//     from `first_token`; CancelImport releases the reservation.
//
// Errors: Submit refuses a bad request (InvalidArgument: empty prompt, token outside the
// vocabulary, prompt longer than the context, invalid sampling parameters; ResourceExhausted:
// the KV budget cannot hold the request at all) without touching other requests. A failure while
// running (non-finite logits) ends that request with an error; the batch continues.
//
// Thread-safety: Submit, Cancel, Stats, ReleaseHeldKv and the import calls are safe from any
// thread. Callbacks run on the engine thread, must be quick and must not call back into the
// engine except Cancel/ReleaseHeldKv.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/batch_scheduler.h"
#include "engine/block_pool.h"
#include "engine/sampling.h"
#include "engine/thread_pool.h"
#include "engine/transformer.h"

namespace tandem::engine {

// A model ready for the engine: config, weight views and whatever keeps the weights alive (an
// mmap, a RandomModel).
struct EngineModel {
  std::string name;
  TransformerConfig config;
  TransformerWeights weights;
  std::shared_ptr<const void> keepalive;
  // Drops the memory pages of weight bytes the engine copied elsewhere (packed for the
  // kernels); set where that is safe (a file mapping refaults from the file), else null.
  std::function<void(const uint8_t* first, int64_t bytes)> release_weight_pages;
};

struct EngineOptions {
  int threads = 0;  // 0 = one per core
  int block_size = 16;
  // The KV cache's element type; unset = auto (ResolveKvType).
  std::optional<KvType> kv_type;
  // KV memory: bytes, or a fraction of RAM, or a caller-provided region (see BlockPoolOptions).
  int64_t kv_budget_bytes = 0;
  double kv_budget_fraction = 0;
  uint8_t* kv_memory = nullptr;
  int64_t kv_memory_bytes = 0;
  bool enable_prefix_cache = true;
  int64_t max_batch_tokens = 512;
  int64_t max_running = 256;
  bool chunked_prefill = true;
  int64_t max_context = 0;  // 0 = the model's
  // Locks the weights steps read and the KV pool in RAM (mlock) for the engine's lifetime, so
  // memory pressure never pages them out (weights read in place from a model file would
  // otherwise be dropped from the page cache and read from disk again mid-step). Create fails
  // when the process may not lock that much (page_memory.h LockPages). Locks do not nest:
  // engines in one process that share a model's mapping unlock its pages for each other when
  // one of them is destroyed (the worker runs one engine per process).
  bool lock_memory = false;
};

// The KV element type for a model: `requested` when set, else (auto) F32 when every matrix of
// the model's layers is F32 and BF16 otherwise: BF16, F16 or quantized weights carry no more
// than 16 bits of precision, and BF16 KV halves attention's reads, the bytes per cached token
// and the bytes a KV transfer moves (vLLM and llama.cpp store KV in 16 bits too).
KvType ResolveKvType(std::optional<KvType> requested, const TransformerWeights& weights);
// Parses a --kv-dtype value: "auto" (nullopt), "f32" or "bf16"; InvalidArgument otherwise.
absl::StatusOr<std::optional<KvType>> ParseKvTypeOption(std::string_view text);

struct TokenEvent {
  uint64_t request_id = 0;
  int64_t index = 0;  // 0 for the first generated token
  SampledToken sampled;
};

enum class FinishReason { kStop, kLength, kCancelled, kError };
std::string_view FinishReasonName(FinishReason reason);

struct FinishEvent {
  uint64_t request_id = 0;
  FinishReason reason = FinishReason::kStop;
  absl::Status status;  // non-OK exactly for kError
  int64_t prompt_tokens = 0;
  int64_t cached_tokens = 0;  // prompt tokens served by the prefix cache (or imported)
  int64_t generated_tokens = 0;
  std::vector<BlockId> blocks;  // with hold_kv: the blocks still held for the caller
};

// Layer `layer`'s KV of positions [start, start + count) is written into `blocks` (the
// sequence's block table).
struct LayerKvEvent {
  uint64_t request_id = 0;
  int layer = 0;
  int64_t start = 0;
  int64_t count = 0;
  std::span<const BlockId> blocks;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  SamplingParams sampling;
  int64_t max_tokens = 256;
  std::vector<int32_t> stop_token_ids;  // generation ends on these (not reported as tokens)
  // Each generated token; return false to finish the request now (e.g. a stop string was found
  // in the decoded text), reported as kStop.
  std::function<bool(const TokenEvent&)> on_token;
  // Exactly once per accepted request.
  std::function<void(const FinishEvent&)> on_finish;
  std::function<void(const LayerKvEvent&)> on_layer_kv;
  bool hold_kv = false;
};

struct ImportReservation {
  uint64_t reservation_id = 0;
  int64_t cached_tokens = 0;        // leading prompt tokens whose KV is already local (no transfer)
  std::vector<BlockId> blocks;      // the whole block table of the prompt
  int64_t first_block_to_fill = 0;  // blocks[first_block_to_fill ..] receive imported KV
};

struct EngineStats {
  double busy_fraction = 0;      // share of wall time spent in steps, since the last Stats()
  double mean_batch_tokens = 0;  // per step, since the last Stats()
  double mean_batch_sequences = 0;
  double generated_tokens_per_second = 0;
  double prompt_tokens_per_second = 0;
  int64_t running = 0;
  int64_t waiting = 0;
  int64_t steps = 0;        // total
  int64_t preemptions = 0;  // total
  BlockPoolStats pool;
  double prefix_hit_rate = 0;  // cached / looked-up prompt blocks, total
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(EngineModel model,
                                                        const EngineOptions& options);
  ~Engine();  // cancels what is left (on_finish with kCancelled) and joins the thread
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  absl::StatusOr<uint64_t> Submit(GenerateRequest request);
  // Ends the request with kCancelled (no-op for unknown or finished ids).
  void Cancel(uint64_t request_id);
  void ReleaseHeldKv(uint64_t request_id);

  absl::StatusOr<ImportReservation> ReserveImport(std::span<const int32_t> prompt);
  // `sender_hashes`: the chained hashes of the prompt's full blocks as the sender computed them
  // (may be empty); DataLoss if they do not match `request.prompt` (the reservation is released).
  absl::StatusOr<uint64_t> CompleteImport(uint64_t reservation_id, GenerateRequest request,
                                          int32_t first_token,
                                          std::span<const BlockHash> sender_hashes = {});
  void CancelImport(uint64_t reservation_id);

  EngineStats Stats();
  BlockPool& kv_pool() { return *pool_; }
  const TransformerConfig& model_config() const { return model_.config; }
  Transformer& transformer() { return *transformer_; }
  int64_t max_context() const { return max_context_; }

 private:
  struct Sequence;
  Engine(EngineModel model, const EngineOptions& options);
  absl::Status ValidateRequest(const GenerateRequest& request) const;
  void Loop();
  bool RunStep();  // false when nothing could run
  void Finish(Sequence& sequence, FinishReason reason, absl::Status status);
  void CommitFullBlocks(Sequence& sequence);
  void ApplyInbox();

  EngineModel model_;
  EngineOptions options_;
  int64_t max_context_ = 0;
  std::unique_ptr<ThreadPool> threads_;
  std::unique_ptr<Transformer> transformer_;
  std::unique_ptr<BlockPool> pool_;
  // Ranges locked by EngineOptions::lock_memory, unlocked by the destructor.
  std::vector<std::pair<const void*, int64_t>> locked_;
  SchedulerConfig scheduler_config_;

  // Inbox from other threads.
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::vector<std::unique_ptr<Sequence>> submitted_;
  std::vector<uint64_t> cancelled_;
  std::vector<uint64_t> released_;
  uint64_t next_id_ = 1;
  struct Reservation {
    std::vector<BlockId> blocks;
    int64_t cached_tokens = 0;
    std::vector<int32_t> prompt;
  };
  absl::flat_hash_map<uint64_t, Reservation> reservations_;
  // Stats shared with Stats().
  int64_t window_steps_ = 0, window_tokens_ = 0, window_sequences_ = 0, window_generated_ = 0,
          window_prompt_ = 0;
  double window_busy_seconds_ = 0;
  double window_start_ = 0;
  int64_t total_steps_ = 0, total_preemptions_ = 0, running_count_ = 0, waiting_count_ = 0;

  // Engine-thread state.
  std::vector<std::unique_ptr<Sequence>> running_;
  std::vector<std::unique_ptr<Sequence>> waiting_;
  absl::flat_hash_map<uint64_t, std::vector<BlockId>> held_;
  std::vector<float> logits_;
  std::thread thread_;
};

}  // namespace tandem::engine
