#include "engine/engine.h"
#include "engine/page_memory.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "core/status.h"

namespace tandem::engine {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string_view FinishReasonName(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kCancelled:
      return "cancelled";
    case FinishReason::kError:
      return "error";
  }
  return "unknown";
}

struct Engine::Sequence {
  uint64_t id = 0;
  uint64_t arrival = 0;
  GenerateRequest request;
  std::unique_ptr<Sampler> sampler;
  std::vector<int32_t> tokens;  // prompt + generated
  int64_t prompt_tokens = 0;
  int64_t computed = 0;
  int64_t generated = 0;
  int64_t cached_tokens = 0;
  bool counted_cache = false;
  std::vector<BlockId> blocks;
  int64_t committed_blocks = 0;  // leading blocks published to the prefix cache
  BlockHash last_hash = kRootBlockHash;
  bool finished = false;
};

KvType ResolveKvType(std::optional<KvType> requested, const TransformerWeights& weights) {
  if (requested.has_value()) return *requested;
  for (const LayerWeights& layer : weights.layers) {
    for (const WeightMatrix* m :
         {&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.w_gate, &layer.w_up, &layer.w_down}) {
      if (m->type != WeightType::kF32) return KvType::kBF16;
    }
  }
  return KvType::kF32;
}

absl::StatusOr<std::optional<KvType>> ParseKvTypeOption(std::string_view text) {
  if (text == "auto") return std::optional<KvType>();
  if (std::optional<KvType> type = ParseKvType(text)) return type;
  return absl::InvalidArgumentError(
      absl::StrCat("KV dtype '", std::string(text),
                   "' is not one of auto (bf16 unless the weights are f32), f32, bf16"));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(EngineModel model,
                                                       const EngineOptions& options) {
  if (options.block_size <= 0 || options.block_size > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("KV block size must be in 1..4096 tokens, got ", options.block_size));
  }
  if (options.max_batch_tokens <= 0 || options.max_running <= 0) {
    return absl::InvalidArgumentError("max_batch_tokens and max_running must be positive");
  }
  auto engine = std::unique_ptr<Engine>(new Engine(std::move(model), options));
  TANDEM_ASSIGN_OR_RETURN(
      engine->transformer_,
      Transformer::Create(engine->model_.config, engine->model_.weights, engine->threads_.get(),
                          engine->model_.release_weight_pages));
  TANDEM_ASSIGN_OR_RETURN(
      engine->pool_, BlockPool::Create({.layout = engine->transformer_->kv_layout(
                                            options.block_size,
                                            ResolveKvType(options.kv_type, engine->model_.weights)),
                                        .budget_bytes = options.kv_budget_bytes,
                                        .budget_fraction = options.kv_budget_fraction,
                                        .memory = options.kv_memory,
                                        .memory_bytes = options.kv_memory_bytes,
                                        .enable_prefix_cache = options.enable_prefix_cache}));
  if (options.lock_memory) {
    std::vector<std::pair<const void*, int64_t>> ranges = engine->transformer_->WeightRanges();
    ranges.emplace_back(engine->pool_->storage(), engine->pool_->storage_bytes());
    int64_t total = 0;
    for (const auto& [data, bytes] : ranges) {
      if (absl::Status locked = LockPages(data, bytes); !locked.ok()) {
        int64_t all = 0;
        for (const auto& range : ranges) all += range.second;
        return absl::Status(locked.code(), absl::StrCat("locking the weights and KV cache (", all,
                                                        " bytes) in memory, ", total,
                                                        " locked so far: ", locked.message()));
      }
      engine->locked_.emplace_back(data, bytes);
      total += bytes;
    }
  }
  engine->window_start_ = NowSeconds();
  engine->thread_ = std::thread([e = engine.get()] { e->Loop(); });
  return engine;
}

Engine::Engine(EngineModel model, const EngineOptions& options)
    : model_(std::move(model)), options_(options) {
  max_context_ = options.max_context > 0 ? std::min(options.max_context, model_.config.max_context)
                                         : model_.config.max_context;
  model_.config.max_context = max_context_;
  threads_ = std::make_unique<ThreadPool>(options.threads);
  // Address space for the most logits rows a step can ask for (one per sequence in the step),
  // reserved once: pages are only touched as steps use them, and the buffer never moves. Grown
  // on demand instead, every larger batch left the previous buffer (up to 32 x 152k floats)
  // behind as freed but resident heap.
  logits_.reserve(std::min(options.max_running, options.max_batch_tokens) *
                  model_.config.vocab_size);
  scheduler_config_ = {.max_batch_tokens = options.max_batch_tokens,
                       .max_running = options.max_running,
                       .block_size = options.block_size,
                       .chunked_prefill = options.chunked_prefill};
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // What never ran or never finished ends here, on this thread.
  for (auto* list : {&submitted_, &running_, &waiting_}) {
    for (auto& sequence : *list) {
      if (!sequence->finished) Finish(*sequence, FinishReason::kCancelled, absl::OkStatus());
    }
  }
  for (auto& [id, reservation] : reservations_) pool_->Release(reservation.blocks);
  for (auto& [id, blocks] : held_) pool_->Release(blocks);
  // A model file's mapping or a caller's KV region can outlive the engine.
  for (const auto& [data, bytes] : locked_) UnlockPages(data, bytes);
}

absl::Status Engine::ValidateRequest(const GenerateRequest& request) const {
  if (request.prompt.empty()) return absl::InvalidArgumentError("the prompt has no tokens");
  const int64_t vocab = model_.config.vocab_size;
  for (size_t i = 0; i < request.prompt.size(); ++i) {
    if (request.prompt[i] < 0 || request.prompt[i] >= vocab) {
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " has id ",
                                                     request.prompt[i],
                                                     ", outside the vocabulary [0, ", vocab, ")"));
    }
  }
  const int64_t prompt = static_cast<int64_t>(request.prompt.size());
  if (prompt >= max_context_) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", prompt, " tokens but the context holds ", max_context_,
                     " (prompt plus at least one generated token); shorten the prompt"));
  }
  if (request.max_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be at least 1, got ", request.max_tokens));
  }
  TANDEM_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  const int64_t longest = std::min(prompt + request.max_tokens, max_context_);
  const int64_t needed = BlocksFor(longest, options_.block_size);
  if (needed > pool_->num_blocks()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("the KV budget holds ", pool_->num_blocks() * options_.block_size, " tokens (",
                     pool_->num_blocks(), " blocks), too few for this request's ", longest,
                     " tokens (prompt + max_tokens); raise the KV budget or lower max_tokens"));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Engine::Submit(GenerateRequest request) {
  TANDEM_RETURN_IF_ERROR(ValidateRequest(request));
  auto sequence = std::make_unique<Sequence>();
  sequence->sampler = std::make_unique<Sampler>(request.sampling, request.prompt);
  sequence->tokens = request.prompt;
  sequence->prompt_tokens = static_cast<int64_t>(request.prompt.size());
  sequence->request = std::move(request);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stop_) return absl::UnavailableError("the engine is shutting down");
    id = next_id_++;
    sequence->id = id;
    sequence->arrival = id;
    submitted_.push_back(std::move(sequence));
  }
  wake_.notify_all();
  return id;
}

void Engine::Cancel(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    cancelled_.push_back(request_id);
  }
  wake_.notify_all();
}

void Engine::ReleaseHeldKv(uint64_t request_id) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    released_.push_back(request_id);
  }
  wake_.notify_all();
}

absl::StatusOr<ImportReservation> Engine::ReserveImport(std::span<const int32_t> prompt) {
  GenerateRequest probe;
  probe.prompt.assign(prompt.begin(), prompt.end());
  probe.max_tokens = 1;
  TANDEM_RETURN_IF_ERROR(ValidateRequest(probe));
  const int bs = options_.block_size;
  const int64_t total_blocks = BlocksFor(static_cast<int64_t>(prompt.size()), bs);
  std::vector<BlockHash> hashes = HashKvBlocks(prompt, bs);
  std::vector<BlockId> blocks = pool_->AcquirePrefix(hashes);
  ImportReservation reservation;
  reservation.cached_tokens = static_cast<int64_t>(blocks.size()) * bs;
  reservation.first_block_to_fill = static_cast<int64_t>(blocks.size());
  auto fresh = pool_->Allocate(total_blocks - static_cast<int64_t>(blocks.size()));
  if (!fresh.ok()) {
    pool_->Release(blocks);
    return fresh.status();
  }
  blocks.insert(blocks.end(), fresh->begin(), fresh->end());
  reservation.blocks = blocks;
  std::lock_guard<std::mutex> lock(mutex_);
  reservation.reservation_id = next_id_++;
  reservations_[reservation.reservation_id] = {
      .blocks = blocks,
      .cached_tokens = reservation.cached_tokens,
      .prompt = std::vector<int32_t>(prompt.begin(), prompt.end())};
  return reservation;
}

void Engine::CancelImport(uint64_t reservation_id) {
  std::vector<BlockId> blocks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = reservations_.find(reservation_id);
    if (it == reservations_.end()) return;
    blocks = std::move(it->second.blocks);
    reservations_.erase(it);
  }
  pool_->Release(blocks);
}

absl::StatusOr<uint64_t> Engine::CompleteImport(uint64_t reservation_id, GenerateRequest request,
                                                int32_t first_token,
                                                std::span<const BlockHash> sender_hashes) {
  Reservation reservation;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = reservations_.find(reservation_id);
    if (it == reservations_.end()) {
      return absl::NotFoundError(absl::StrCat("no KV import reservation ", reservation_id));
    }
    reservation = std::move(it->second);
    reservations_.erase(it);
  }
  auto fail = [&](absl::Status status) {
    pool_->Release(reservation.blocks);
    return status;
  };
  if (request.prompt != reservation.prompt) {
    return fail(absl::InvalidArgumentError("the request's prompt differs from the reserved one"));
  }
  if (absl::Status s = ValidateRequest(request); !s.ok()) return fail(s);
  if (first_token < 0 || first_token >= model_.config.vocab_size) {
    return fail(absl::InvalidArgumentError(
        absl::StrCat("first token ", first_token, " is outside the vocabulary")));
  }
  if (absl::Status s = VerifyHashChain(request.prompt, options_.block_size, sender_hashes);
      !s.ok()) {
    return fail(s);
  }
  auto sequence = std::make_unique<Sequence>();
  sequence->sampler = std::make_unique<Sampler>(request.sampling, request.prompt);
  sequence->sampler->Accept(first_token);
  sequence->tokens = request.prompt;
  sequence->tokens.push_back(first_token);
  sequence->prompt_tokens = static_cast<int64_t>(request.prompt.size());
  sequence->computed = sequence->prompt_tokens;
  sequence->generated = 1;
  sequence->cached_tokens = sequence->prompt_tokens;
  sequence->counted_cache = true;
  sequence->blocks = std::move(reservation.blocks);
  sequence->request = std::move(request);
  CommitFullBlocks(*sequence);
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    id = next_id_++;
    sequence->id = id;
    sequence->arrival = id;
    submitted_.push_back(std::move(sequence));
  }
  wake_.notify_all();
  return id;
}

void Engine::CommitFullBlocks(Sequence& s) {
  if (!pool_->prefix_cache_enabled()) return;
  const int bs = options_.block_size;
  const int64_t full = std::min<int64_t>(s.computed / bs, static_cast<int64_t>(s.blocks.size()));
  if (full <= s.committed_blocks) return;
  std::vector<BlockHash> hashes;
  BlockHash parent = s.last_hash;
  const BlockHash first_parent = parent;
  for (int64_t b = s.committed_blocks; b < full; ++b) {
    parent = HashKvBlock(parent, std::span(s.tokens).subspan(b * bs, bs));
    hashes.push_back(parent);
  }
  pool_->CommitChain(std::span(s.blocks).subspan(s.committed_blocks, full - s.committed_blocks),
                     first_parent, hashes);
  s.committed_blocks = full;
  s.last_hash = parent;
}

void Engine::Finish(Sequence& s, FinishReason reason, absl::Status status) {
  if (s.finished) return;
  s.finished = true;
  FinishEvent event{.request_id = s.id,
                    .reason = reason,
                    .status = std::move(status),
                    .prompt_tokens = s.prompt_tokens,
                    .cached_tokens = s.cached_tokens,
                    .generated_tokens = s.generated};
  if (s.request.hold_kv && reason != FinishReason::kCancelled && reason != FinishReason::kError) {
    event.blocks = s.blocks;
    held_[s.id] = std::move(s.blocks);
  } else {
    pool_->Release(s.blocks);
  }
  s.blocks.clear();
  if (s.request.on_finish) s.request.on_finish(event);
}

void Engine::ApplyInbox() {
  std::vector<std::unique_ptr<Sequence>> submitted;
  std::vector<uint64_t> cancelled, released;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    submitted.swap(submitted_);
    cancelled.swap(cancelled_);
    released.swap(released_);
  }
  for (auto& s : submitted) {
    // Imported sequences arrive with their KV and first token: they go straight to the running
    // set, unless that first token already ends them (a stop token, max_tokens 1, or the
    // context full), exactly as if it had been sampled here.
    if (s->computed > 0) {
      const auto& stops = s->request.stop_token_ids;
      if (std::find(stops.begin(), stops.end(), s->tokens.back()) != stops.end()) {
        Finish(*s, FinishReason::kStop, absl::OkStatus());
      } else if (s->generated >= s->request.max_tokens ||
                 static_cast<int64_t>(s->tokens.size()) >= max_context_) {
        Finish(*s, FinishReason::kLength, absl::OkStatus());
      }
      running_.push_back(std::move(s));
    } else {
      waiting_.push_back(std::move(s));
    }
  }
  for (uint64_t id : released) {
    auto it = held_.find(id);
    if (it == held_.end()) continue;
    pool_->Release(it->second);
    held_.erase(it);
  }
  for (uint64_t id : cancelled) {
    for (auto* list : {&running_, &waiting_}) {
      for (auto& s : *list) {
        if (s->id == id) Finish(*s, FinishReason::kCancelled, absl::OkStatus());
      }
    }
  }
  auto sweep = [](std::vector<std::unique_ptr<Sequence>>& list) {
    list.erase(std::remove_if(list.begin(), list.end(), [](const auto& s) { return s->finished; }),
               list.end());
  };
  sweep(running_);
  sweep(waiting_);
}

void Engine::Loop() {
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] {
        return stop_ || !submitted_.empty() || !cancelled_.empty() || !released_.empty() ||
               !running_.empty() || !waiting_.empty();
      });
      if (stop_) return;
    }
    ApplyInbox();
    if (running_.empty() && waiting_.empty()) continue;
    if (!RunStep()) {
      // Nothing could run (blocks held by reservations or held KV): wait for the inbox rather
      // than spin; a release or cancel wakes us.
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(5), [&] {
        return stop_ || !submitted_.empty() || !cancelled_.empty() || !released_.empty();
      });
    }
  }
}

bool Engine::RunStep() {
  const double step_start = NowSeconds();
  const int bs = options_.block_size;
  // The scheduler's view. Waiting sequences count their cached prefix as computed and held:
  // those blocks are acquired, not allocated, on admission.
  std::vector<SchedSequence> running, waiting;
  absl::flat_hash_map<uint64_t, Sequence*> by_id;
  absl::flat_hash_map<uint64_t, std::vector<BlockHash>> prefix_hashes;
  for (auto& s : running_) {
    running.push_back({.id = s->id,
                       .arrival = s->arrival,
                       .tokens = static_cast<int64_t>(s->tokens.size()),
                       .computed = s->computed,
                       .blocks_held = static_cast<int64_t>(s->blocks.size())});
    by_id[s->id] = s.get();
  }
  for (auto& s : waiting_) {
    const int64_t tokens = static_cast<int64_t>(s->tokens.size());
    std::vector<BlockHash> hashes;
    int64_t matched = 0;
    if (pool_->prefix_cache_enabled()) {
      // At least one token must be computed (its logits give the next token), and it must not
      // fall in a shared block: the last usable cached block ends before the last token.
      hashes = HashKvBlocks(std::span(s->tokens).first(tokens - 1), bs);
      matched = pool_->MatchPrefix(hashes);
      hashes.resize(matched);
    }
    waiting.push_back({.id = s->id,
                       .arrival = s->arrival,
                       .tokens = tokens,
                       .computed = matched * bs,
                       .blocks_held = matched});
    prefix_hashes[s->id] = std::move(hashes);
    by_id[s->id] = s.get();
  }
  StepPlan plan = PlanStep(
      scheduler_config_,
      {.running = running, .waiting = waiting, .available_blocks = pool_->AvailableBlocks()});

  // Preemption by recompute: free the blocks, keep tokens and sampler, requeue.
  for (uint64_t id : plan.preempted) {
    Sequence* s = by_id[id];
    pool_->Release(s->blocks);
    s->blocks.clear();
    s->computed = 0;
    s->committed_blocks = 0;
    s->last_hash = kRootBlockHash;
  }
  total_preemptions_ += static_cast<int64_t>(plan.preempted.size());
  absl::flat_hash_map<uint64_t, bool> admitted;
  for (uint64_t id : plan.admitted) admitted[id] = false;

  // Blocks for each piece of work; a piece whose blocks cannot be had (a concurrent import took
  // them) sits this step out.
  struct Piece {
    Sequence* sequence;
    ScheduledWork work;
  };
  std::vector<Piece> pieces;
  for (const ScheduledWork& work : plan.work) {
    Sequence* s = by_id[work.id];
    const bool admitting = admitted.contains(work.id);
    if (admitting) {
      const std::vector<BlockHash>& hashes = prefix_hashes[work.id];
      std::vector<BlockId> acquired = pool_->AcquirePrefix(hashes);
      if (acquired.size() != hashes.size()) {
        pool_->Release(acquired);
        continue;
      }
      s->blocks = std::move(acquired);
      s->computed = static_cast<int64_t>(s->blocks.size()) * bs;
      s->committed_blocks = static_cast<int64_t>(s->blocks.size());
      s->last_hash = hashes.empty() ? kRootBlockHash : hashes.back();
      if (!s->counted_cache) {
        s->cached_tokens = s->computed;
        s->counted_cache = true;
      }
    }
    const int64_t missing = work.blocks_after - static_cast<int64_t>(s->blocks.size());
    if (missing > 0) {
      auto fresh = pool_->Allocate(missing);
      if (!fresh.ok()) {
        if (admitting) {
          pool_->Release(s->blocks);
          s->blocks.clear();
          s->computed = 0;
          s->committed_blocks = 0;
        }
        continue;
      }
      s->blocks.insert(s->blocks.end(), fresh->begin(), fresh->end());
    }
    if (admitting) admitted[work.id] = true;
    pieces.push_back({s, work});
  }
  // Move admitted sequences to running and preempted ones back to waiting (arrival order is
  // restored by the scheduler's sort).
  {
    std::vector<std::unique_ptr<Sequence>> still_waiting;
    for (auto& s : waiting_) {
      auto it = admitted.find(s->id);
      if (it != admitted.end() && it->second) {
        running_.push_back(std::move(s));
      } else {
        still_waiting.push_back(std::move(s));
      }
    }
    waiting_ = std::move(still_waiting);
    for (uint64_t id : plan.preempted) {
      for (auto& s : running_) {
        if (s && s->id == id) waiting_.push_back(std::move(s));
      }
    }
    running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
  }
  if (pieces.empty()) return false;

  std::vector<SequenceChunk> chunks;
  chunks.reserve(pieces.size());
  int64_t logit_rows = 0;
  for (const Piece& p : pieces) {
    chunks.push_back(
        {.tokens = std::span(p.sequence->tokens).subspan(p.work.start, p.work.count),
         .start = p.work.start,
         .blocks = p.sequence->blocks,
         .logits = p.work.samples ? SequenceChunk::Logits::kLast : SequenceChunk::Logits::kNone});
    logit_rows += p.work.samples ? 1 : 0;
  }
  logits_.resize(logit_rows * model_.config.vocab_size);
  LayerDoneCallback on_layer;
  bool any_hook = false;
  for (const Piece& p : pieces) any_hook |= static_cast<bool>(p.sequence->request.on_layer_kv);
  if (any_hook) {
    on_layer = [&](int layer) {
      for (const Piece& p : pieces) {
        if (!p.sequence->request.on_layer_kv) continue;
        p.sequence->request.on_layer_kv({.request_id = p.sequence->id,
                                         .layer = layer,
                                         .start = p.work.start,
                                         .count = p.work.count,
                                         .blocks = p.sequence->blocks});
      }
    };
  }
  absl::Status status = transformer_->Forward(chunks, *pool_, logits_.data(), on_layer);
  int64_t generated = 0, prompt_tokens = 0;
  int64_t row = 0;
  for (const Piece& p : pieces) {
    Sequence& s = *p.sequence;
    if (!status.ok()) {
      Finish(s, FinishReason::kError, status);
      continue;
    }
    s.computed = p.work.start + p.work.count;
    prompt_tokens += std::max<int64_t>(0, std::min(s.computed, s.prompt_tokens) - p.work.start);
    CommitFullBlocks(s);
    if (!p.work.samples) continue;
    const float* logits = logits_.data() + row++ * model_.config.vocab_size;
    auto sampled = s.sampler->Sample(std::span(logits, model_.config.vocab_size));
    if (!sampled.ok()) {
      Finish(s, FinishReason::kError, sampled.status());
      continue;
    }
    const int32_t token = sampled->token;
    s.tokens.push_back(token);
    ++s.generated;
    ++generated;
    const auto& stops = s.request.stop_token_ids;
    if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
      Finish(s, FinishReason::kStop, absl::OkStatus());
      continue;
    }
    bool keep_going = true;
    if (s.request.on_token) {
      keep_going = s.request.on_token(
          {.request_id = s.id, .index = s.generated - 1, .sampled = std::move(sampled).value()});
    }
    if (!keep_going) {
      Finish(s, FinishReason::kStop, absl::OkStatus());
    } else if (s.generated >= s.request.max_tokens ||
               static_cast<int64_t>(s.tokens.size()) >= max_context_) {
      Finish(s, FinishReason::kLength, absl::OkStatus());
    }
  }
  running_.erase(
      std::remove_if(running_.begin(), running_.end(), [](const auto& s) { return s->finished; }),
      running_.end());

  const double elapsed = NowSeconds() - step_start;
  std::lock_guard<std::mutex> lock(mutex_);
  ++window_steps_;
  ++total_steps_;
  window_tokens_ += plan.tokens;
  window_sequences_ += static_cast<int64_t>(pieces.size());
  window_generated_ += generated;
  window_prompt_ += prompt_tokens;
  window_busy_seconds_ += elapsed;
  running_count_ = static_cast<int64_t>(running_.size());
  waiting_count_ = static_cast<int64_t>(waiting_.size());
  return true;
}

EngineStats Engine::Stats() {
  EngineStats stats;
  const double now = NowSeconds();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    const double window = std::max(1e-9, now - window_start_);
    stats.busy_fraction = std::min(1.0, window_busy_seconds_ / window);
    if (window_steps_ > 0) {
      stats.mean_batch_tokens = static_cast<double>(window_tokens_) / window_steps_;
      stats.mean_batch_sequences = static_cast<double>(window_sequences_) / window_steps_;
    }
    stats.generated_tokens_per_second = window_generated_ / window;
    stats.prompt_tokens_per_second = window_prompt_ / window;
    stats.running = running_count_;
    stats.waiting = waiting_count_ + static_cast<int64_t>(submitted_.size());
    stats.steps = total_steps_;
    stats.preemptions = total_preemptions_;
    window_steps_ = window_tokens_ = window_sequences_ = window_generated_ = window_prompt_ = 0;
    window_busy_seconds_ = 0;
    window_start_ = now;
  }
  stats.pool = pool_->Stats();
  if (stats.pool.prefix_lookups > 0) {
    stats.prefix_hit_rate = static_cast<double>(stats.pool.prefix_hits) / stats.pool.prefix_lookups;
  }
  return stats;
}

}  // namespace tandem::engine
