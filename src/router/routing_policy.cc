#include "router/routing_policy.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::router {

namespace {

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A uniform double in [0, 1) from the top 53 bits; written out rather than taken from
// <random>'s distributions, whose output differs between standard libraries.
double UniformUnit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }

size_t UniformIndex(std::mt19937_64& rng, size_t n) { return n <= 1 ? 0 : rng() % n; }

bool ServesDecode(WorkerRole role) {
  return role == WorkerRole::kDecode || role == WorkerRole::kBoth;
}

bool Eligible(const WorkerState& worker) { return worker.ready && !worker.draining; }

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Argmin with ties broken uniformly, or with temperature > 0 a softmax sample over min-max
// normalised costs (so the temperature means the same whatever the cost scale), among the rows
// marked in `candidate` (`count` of them, at least one), in row order. Rows that are not
// candidates cost infinity. `ties` is scratch space.
uint32_t Choose(std::span<const double> cost, std::span<const uint8_t> candidate, int32_t count,
                double temperature, std::mt19937_64& rng, std::vector<uint32_t>& ties,
                bool* sampled) {
  const uint32_t rows = static_cast<uint32_t>(cost.size());
  *sampled = false;
  if (temperature <= 0 || count <= 1) {
    // Four running minima, so that each waits on a quarter of the rows.
    double lanes[4] = {kInfinity, kInfinity, kInfinity, kInfinity};
    uint32_t r = 0;
    for (; r + 4 <= rows; r += 4) {
      for (int k = 0; k < 4; ++k) lanes[k] = std::min(lanes[k], cost[r + k]);
    }
    for (; r < rows; ++r) lanes[0] = std::min(lanes[0], cost[r]);
    const double lowest = std::min(std::min(lanes[0], lanes[1]), std::min(lanes[2], lanes[3]));
    ties.clear();
    if (lowest < kInfinity) {
      for (r = 0; r < rows; ++r) {
        if (cost[r] == lowest) ties.push_back(r);
      }
    } else {
      // Every candidate costs infinity (weights beyond the range of doubles): all tie.
      for (r = 0; r < rows; ++r) {
        if (candidate[r] && cost[r] == lowest) ties.push_back(r);
      }
    }
    return ties[UniformIndex(rng, ties.size())];
  }
  *sampled = true;
  double lowest = kInfinity;
  double highest = -kInfinity;
  for (uint32_t r = 0; r < rows; ++r) {
    if (!candidate[r]) continue;
    lowest = std::min(lowest, cost[r]);
    highest = std::max(highest, cost[r]);
  }
  auto nth_candidate = [&](size_t n) {
    uint32_t r = 0;
    for (;; ++r) {
      if (candidate[r] && n-- == 0) return r;
    }
  };
  if (highest <= lowest) return nth_candidate(UniformIndex(rng, static_cast<size_t>(count)));
  auto weight = [&](uint32_t r) {
    const double normalised = (cost[r] - lowest) / (highest - lowest);
    return std::exp(-normalised / temperature);
  };
  double total = 0;
  for (uint32_t r = 0; r < rows; ++r) {
    if (candidate[r]) total += weight(r);
  }
  double target = UniformUnit(rng) * total;
  uint32_t last = 0;
  for (uint32_t r = 0; r < rows; ++r) {
    if (!candidate[r]) continue;
    target -= weight(r);
    if (target < 0) return r;
    last = r;
  }
  return last;
}

struct DecodeScore {
  bool fits;  // the worker has room for what the request adds
  double cost;
};

// The decode cost of a worker caching `overlap` (clamped) blocks of the prompt.
DecodeScore ScoreDecode(int64_t active_blocks, int64_t capacity_blocks, int64_t overlap,
                        int64_t prompt_blocks, int64_t request_blocks, double overlap_weight) {
  // Cached blocks are shared, not allocated again: the request adds only the rest.
  const int64_t new_blocks = request_blocks - overlap;
  return {capacity_blocks <= 0 || active_blocks + new_blocks <= capacity_blocks,
          overlap_weight * static_cast<double>(prompt_blocks - overlap) +
              static_cast<double>(active_blocks + new_blocks)};
}

// The cost of waiting for `queued` tokens already queued on a prefill worker.
double QueueCost(int64_t queued, const RoutingConfig& config) {
  return config.prefill_queue_weight *
         (config.latency_model != nullptr
              ? config.latency_model->PrefillSeconds(queued, 0)
              : static_cast<double>(CeilDiv(queued, config.block_size)));
}

// Prefill costs for one request and one decode worker: compute + queue + transfer. The terms
// that repeat across prefill workers (compute without a cached prefix, the transfer by distance)
// are computed once; the latency model is a pure function, so the costs are those of computing
// every term for every worker.
class PrefillScorer {
 public:
  PrefillScorer(const RouteRequest& request, const RoutingConfig& config, double transfer_bytes,
                double transfer_blocks)
      : request_(request), config_(config) {
    for (LinkDistance distance : {LinkDistance::kSameWorker, LinkDistance::kSameHost,
                                  LinkDistance::kSameRack, LinkDistance::kCrossRack}) {
      double transfer;
      if (config.latency_model != nullptr) {
        transfer = config.links.TransferSeconds(distance, transfer_bytes);
      } else {
        transfer = distance == LinkDistance::kSameWorker
                       ? 0
                       : config.transfer_weight * config.links.SlowdownVsSameHost(distance) *
                             transfer_blocks;
      }
      transfer_[static_cast<int>(distance)] = transfer;
    }
    no_overlap_compute_ = Compute(0);
  }

  // `overlap` is clamped to the prompt's blocks; `queue_cost` is QueueCost of its queue.
  double Cost(int64_t overlap, double queue_cost, LinkDistance distance) const {
    const double compute = overlap == 0 ? no_overlap_compute_ : Compute(overlap);
    return compute + queue_cost + transfer_[static_cast<int>(distance)];
  }

 private:
  double Compute(int64_t overlap) const {
    const int64_t cached_tokens = std::min(request_.prompt_tokens, overlap * config_.block_size);
    const int64_t uncached = request_.prompt_tokens - cached_tokens;
    return config_.latency_model != nullptr
               ? config_.latency_model->PrefillSeconds(uncached, cached_tokens)
               : static_cast<double>(CeilDiv(uncached, config_.block_size));
  }

  const RouteRequest& request_;
  const RoutingConfig& config_;
  double transfer_[4] = {};
  double no_overlap_compute_ = 0;
};

LinkDistance DistanceBetween(WorkerId a_id, const Location& a, WorkerId b_id, const Location& b) {
  return a_id == b_id ? LinkDistance::kSameWorker : Distance(a, b);
}

// The blocks `overlaps` gives the worker at `position` (its last entry), clamped to the prompt.
int64_t OverlapOf(std::span<const WorkerOverlap> overlaps, uint32_t position,
                  int64_t prompt_blocks) {
  int32_t blocks = 0;
  for (const WorkerOverlap& overlap : overlaps) {
    if (overlap.worker == position) blocks = overlap.blocks;
  }
  return std::clamp<int64_t>(blocks, 0, prompt_blocks);
}

}  // namespace

std::string_view WorkerRoleName(WorkerRole role) {
  switch (role) {
    case WorkerRole::kPrefill:
      return "prefill";
    case WorkerRole::kDecode:
      return "decode";
    case WorkerRole::kBoth:
      return "both";
  }
  return "unknown";
}

std::string_view PrefillPlacementName(PrefillPlacement placement) {
  switch (placement) {
    case PrefillPlacement::kDisaggregated:
      return "disaggregated";
    case PrefillPlacement::kLocalDisabled:
      return "local:disaggregation_off";
    case PrefillPlacement::kLocalNoPrefillWorker:
      return "local:no_prefill_worker";
    case PrefillPlacement::kLocalFewUncached:
      return "local:few_uncached_tokens";
    case PrefillPlacement::kLocalPoolSaturated:
      return "local:prefill_pool_saturated";
  }
  return "unknown";
}

double LinearPrefillLatencyModel::PrefillSeconds(int64_t new_tokens, int64_t cached_tokens) const {
  if (new_tokens <= 0) return 0;
  const double n = static_cast<double>(new_tokens);
  return fixed_ + per_token_ * n + per_context_ * n * (static_cast<double>(cached_tokens) + n / 2);
}

absl::Status ValidateRoutingConfig(const RoutingConfig& config) {
  auto bad = [](absl::string_view field, auto value, absl::string_view expected) {
    return absl::InvalidArgumentError(
        absl::StrCat("routing config: ", field, " is ", value, ", expected ", expected));
  };
  auto finite_non_negative = [](double v) { return std::isfinite(v) && v >= 0; };
  if (config.block_size < 1 || config.block_size > 4096) {
    return bad("block_size", config.block_size, "1..4096 tokens (the engines' block size)");
  }
  if (!finite_non_negative(config.overlap_weight)) {
    return bad("overlap_weight", config.overlap_weight, "a finite number >= 0");
  }
  if (!finite_non_negative(config.temperature)) {
    return bad("temperature", config.temperature, "a finite number >= 0 (0 = argmin)");
  }
  if (config.local_prefill_max_uncached_tokens < 0) {
    return bad("local_prefill_max_uncached_tokens", config.local_prefill_max_uncached_tokens,
               ">= 0");
  }
  if (config.prefill_queue_limit < 1) {
    return bad("prefill_queue_limit", config.prefill_queue_limit, ">= 1 queued prefill jobs");
  }
  if (!finite_non_negative(config.prefill_queue_weight)) {
    return bad("prefill_queue_weight", config.prefill_queue_weight, "a finite number >= 0");
  }
  if (!finite_non_negative(config.transfer_weight)) {
    return bad("transfer_weight", config.transfer_weight, "a finite number >= 0");
  }
  if (config.kv_bytes_per_token < 1 || config.kv_bytes_per_token > kMaxKvBytesPerToken) {
    return bad("kv_bytes_per_token", config.kv_bytes_per_token,
               absl::StrCat("1..", kMaxKvBytesPerToken,
                            " (2 * layers * kv_heads * head_dim * bytes per element)"));
  }
  if (config.forecast_output_tokens < 0) {
    return bad("forecast_output_tokens", config.forecast_output_tokens, ">= 0");
  }
  return ValidateLinkTable(config.links);
}

int64_t TransferKvBytesPerToken(const WorkerState& decode_worker, const RoutingConfig& config) {
  return decode_worker.kv_bytes_per_token > 0 ? decode_worker.kv_bytes_per_token
                                              : config.kv_bytes_per_token;
}

int64_t ForecastDecodeBlocks(const RouteRequest& request, const RoutingConfig& config) {
  const int64_t output =
      std::min(std::max<int64_t>(request.max_tokens, 0), config.forecast_output_tokens);
  return CeilDiv(std::max<int64_t>(request.prompt_tokens, 0) + output, config.block_size);
}

uint32_t WorkerTable::Add(const WorkerState& worker) {
  const uint32_t position = size();
  workers_.push_back(worker);
  workers_.back().overlap_blocks = 0;
  row_.push_back(0);
  AppendRow(position);
  return position;
}

void WorkerTable::Assign(std::span<const WorkerState> workers) {
  workers_.assign(workers.begin(), workers.end());
  row_.resize(workers.size());
  size_t decode_rows = 0;
  for (const WorkerState& worker : workers) decode_rows += ServesDecode(worker.role);
  ResizeColumns(decode_rows, workers.size() - decode_rows);
  // New workers, perhaps a new latency model at the address of the last one: remember nothing.
  std::fill(prefill_.queue_cost_tokens.begin(), prefill_.queue_cost_tokens.end(), kNoQueueCost);
  uint32_t decode_row = 0, prefill_row = 0;
  for (uint32_t position = 0; position < size(); ++position) {
    WorkerState& worker = workers_[position];
    worker.overlap_blocks = 0;
    if (ServesDecode(worker.role)) {
      row_[position] = decode_row;
      decode_.position[decode_row++] = position;
    } else {
      row_[position] = prefill_row;
      prefill_.position[prefill_row++] = position;
    }
    SetRow(position);
  }
}

void WorkerTable::ResizeColumns(size_t decode_rows, size_t prefill_rows) {
  decode_.position.resize(decode_rows);
  decode_.eligible.resize(decode_rows);
  decode_.active_blocks.resize(decode_rows);
  decode_.capacity_blocks.resize(decode_rows);
  prefill_.position.resize(prefill_rows);
  prefill_.eligible.resize(prefill_rows);
  prefill_.queue_requests.resize(prefill_rows);
  prefill_.queue_tokens.resize(prefill_rows);
  prefill_.id.resize(prefill_rows);
  prefill_.location.resize(prefill_rows);
  prefill_.queue_cost_tokens.resize(prefill_rows, kNoQueueCost);
  prefill_.queue_cost.resize(prefill_rows);
}

void WorkerTable::KeepQueueCostsFor(const RoutingConfig& config) {
  if (config.latency_model == queue_cost_model_ &&
      config.prefill_queue_weight == queue_cost_weight_ &&
      config.block_size == queue_cost_block_size_) {
    return;
  }
  queue_cost_model_ = config.latency_model;
  queue_cost_weight_ = config.prefill_queue_weight;
  queue_cost_block_size_ = config.block_size;
  std::fill(prefill_.queue_cost_tokens.begin(), prefill_.queue_cost_tokens.end(), kNoQueueCost);
}

void WorkerTable::Set(uint32_t position, const WorkerState& worker) {
  const bool moved = ServesDecode(workers_[position].role) != ServesDecode(worker.role);
  workers_[position] = worker;
  workers_[position].overlap_blocks = 0;
  if (moved) {
    Rebuild();
  } else {
    SetRow(position);
  }
}

void WorkerTable::AppendRow(uint32_t position) {
  const size_t decode_rows = decode_.position.size();
  const size_t prefill_rows = prefill_.position.size();
  if (ServesDecode(workers_[position].role)) {
    ResizeColumns(decode_rows + 1, prefill_rows);
    row_[position] = static_cast<uint32_t>(decode_rows);
    decode_.position[decode_rows] = position;
  } else {
    ResizeColumns(decode_rows, prefill_rows + 1);
    row_[position] = static_cast<uint32_t>(prefill_rows);
    prefill_.position[prefill_rows] = position;
  }
  SetRow(position);
}

void WorkerTable::SetRow(uint32_t position) {
  const WorkerState& worker = workers_[position];
  const uint32_t row = row_[position];
  if (ServesDecode(worker.role)) {
    decode_.eligible[row] = Eligible(worker);
    decode_.active_blocks[row] = worker.active_decode_blocks;
    decode_.capacity_blocks[row] = worker.capacity_blocks;
  } else {
    // Only role prefill reaches here; kDecode and kBoth serve decode.
    prefill_.eligible[row] = Eligible(worker);
    prefill_.queue_requests[row] = worker.prefill_queue_requests;
    prefill_.queue_tokens[row] = worker.prefill_queue_tokens;
    prefill_.id[row] = worker.id;
    prefill_.location[row] = worker.location;
  }
}

void WorkerTable::Rebuild() {
  const std::vector<WorkerState> workers = std::move(workers_);
  Assign(workers);
}

absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request,
                                            std::span<const WorkerState> workers,
                                            const RoutingConfig& config, std::mt19937_64& rng) {
  // Reused by each thread, so that a decision allocates nothing once warm.
  thread_local WorkerTable table;
  thread_local std::vector<WorkerOverlap> overlaps;
  table.Assign(workers);
  overlaps.clear();
  for (uint32_t position = 0; position < workers.size(); ++position) {
    const int32_t blocks = workers[position].overlap_blocks;
    if (blocks != 0) overlaps.push_back({position, blocks});
  }
  return DecideRoute(request, table, overlaps, config, rng);
}

absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request, WorkerTable& table,
                                            std::span<const WorkerOverlap> overlaps,
                                            const RoutingConfig& config, std::mt19937_64& rng) {
  if (request.prompt_tokens < 0 || request.max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("route request: prompt_tokens ",
                                                   request.prompt_tokens, " and max_tokens ",
                                                   request.max_tokens, " must both be >= 0"));
  }
  for (const WorkerOverlap& overlap : overlaps) {
    if (overlap.worker >= table.size()) {
      return absl::InvalidArgumentError(absl::StrCat("route request: overlap for worker position ",
                                                     overlap.worker, " of a table of ",
                                                     table.size(), " workers"));
    }
  }
  const int64_t block_size = config.block_size;
  const int64_t prompt_blocks = CeilDiv(request.prompt_tokens, block_size);
  const int64_t request_blocks = ForecastDecodeBlocks(request, config);
  const std::span<const WorkerState> workers = table.workers_;
  // Scratch by row, for the decode choice and then the prefill choice.
  table.cost_.resize(workers.size());
  table.candidate_.resize(workers.size());
  double* const cost = table.cost_.data();
  uint8_t* const candidate = table.candidate_.data();

  // 1. Decode worker: every row as if it cached nothing, then the few that cache a prefix.
  const WorkerTable::DecodeColumns& decode = table.decode_;
  const uint32_t decode_rows = static_cast<uint32_t>(decode.position.size());
  int32_t ready_decode = 0;
  int32_t fitting = 0;
  {
    // Locals, not members: the stores below could alias anything the loop reads through a
    // reference, which would reload it every row.
    const double overlap_weight = config.overlap_weight;
    const uint8_t* const eligible = decode.eligible.data();
    const int64_t* const active_blocks = decode.active_blocks.data();
    const int64_t* const capacity_blocks = decode.capacity_blocks.data();
    for (uint32_t r = 0; r < decode_rows; ++r) {
      const DecodeScore score = ScoreDecode(active_blocks[r], capacity_blocks[r], /*overlap=*/0,
                                            prompt_blocks, request_blocks, overlap_weight);
      const bool fits = eligible[r] && score.fits;
      ready_decode += eligible[r];
      fitting += fits;
      candidate[r] = fits;
      cost[r] = fits ? score.cost : kInfinity;
    }
  }
  for (const WorkerOverlap& overlap : overlaps) {
    if (!ServesDecode(workers[overlap.worker].role)) continue;
    const uint32_t r = table.row_[overlap.worker];
    if (!decode.eligible[r]) continue;
    const DecodeScore score = ScoreDecode(decode.active_blocks[r], decode.capacity_blocks[r],
                                          std::clamp<int64_t>(overlap.blocks, 0, prompt_blocks),
                                          prompt_blocks, request_blocks, config.overlap_weight);
    fitting += static_cast<int32_t>(score.fits) - static_cast<int32_t>(candidate[r]);
    candidate[r] = score.fits;
    cost[r] = score.fits ? score.cost : kInfinity;
  }
  if (ready_decode == 0) {
    return absl::UnavailableError(absl::StrCat("no decode worker is ready and not draining (",
                                               workers.size(), " workers known)"));
  }
  if (fitting == 0) {
    return absl::ResourceExhaustedError(absl::StrCat("all ", ready_decode,
                                                     " ready decode workers lack room for ",
                                                     request_blocks, " more KV blocks"));
  }
  RoutingDecision decision;
  decision.eligible_decode_workers = fitting;
  const uint32_t decode_row = Choose({cost, decode_rows}, {candidate, decode_rows}, fitting,
                                     config.temperature, rng, table.ties_, &decision.sampled);
  const uint32_t decode_position = decode.position[decode_row];
  const WorkerState& decode_worker = workers[decode_position];
  decision.decode_worker = decode_worker.id;
  decision.decode_cost = cost[decode_row];
  decision.decode_overlap_blocks =
      static_cast<int32_t>(OverlapOf(overlaps, decode_position, prompt_blocks));
  decision.decode_new_blocks = request_blocks - decision.decode_overlap_blocks;
  decision.uncached_tokens = std::max<int64_t>(
      0, request.prompt_tokens - int64_t{decision.decode_overlap_blocks} * block_size);

  // 2. Conditional disaggregation.
  if (!config.disaggregation) {
    decision.placement = PrefillPlacement::kLocalDisabled;
    return decision;
  }
  const WorkerTable::PrefillColumns& prefill = table.prefill_;
  const uint32_t prefill_rows = static_cast<uint32_t>(prefill.position.size());
  int32_t ready_prefill = 0;
  int32_t eligible_prefill = 0;
  for (uint32_t r = 0; r < prefill_rows; ++r) {
    const bool eligible =
        prefill.eligible[r] && prefill.queue_requests[r] < config.prefill_queue_limit;
    ready_prefill += prefill.eligible[r];
    eligible_prefill += eligible;
    candidate[r] = eligible;
  }
  decision.eligible_prefill_workers = eligible_prefill;
  if (ready_prefill == 0) {
    decision.placement = PrefillPlacement::kLocalNoPrefillWorker;
    return decision;
  }
  if (decision.uncached_tokens <= config.local_prefill_max_uncached_tokens) {
    decision.placement = PrefillPlacement::kLocalFewUncached;
    return decision;
  }
  if (eligible_prefill == 0) {
    decision.placement = PrefillPlacement::kLocalPoolSaturated;
    return decision;
  }

  // 3. Prefill worker: compute + queue + transfer of what the decode worker lacks.
  const double transfer_bytes = static_cast<double>(decision.uncached_tokens) *
                                static_cast<double>(TransferKvBytesPerToken(decode_worker, config));
  const double transfer_blocks =
      static_cast<double>(prompt_blocks - decision.decode_overlap_blocks);
  PrefillScorer scorer(request, config, transfer_bytes, transfer_blocks);
  table.KeepQueueCostsFor(config);
  int64_t* const queue_cost_tokens = table.prefill_.queue_cost_tokens.data();
  double* const queue_cost = table.prefill_.queue_cost.data();
  for (uint32_t r = 0; r < prefill_rows; ++r) {
    if (!candidate[r]) {
      cost[r] = kInfinity;
      continue;
    }
    // A queue's cost is remembered until the queue changes.
    const int64_t queued = std::max<int64_t>(prefill.queue_tokens[r], 0);
    if (queue_cost_tokens[r] != queued) {
      queue_cost_tokens[r] = queued;
      queue_cost[r] = QueueCost(queued, config);
    }
    cost[r] = scorer.Cost(/*overlap=*/0, queue_cost[r],
                          DistanceBetween(prefill.id[r], prefill.location[r], decode_worker.id,
                                          decode_worker.location));
  }
  for (const WorkerOverlap& overlap : overlaps) {
    if (workers[overlap.worker].role != WorkerRole::kPrefill) continue;
    const uint32_t r = table.row_[overlap.worker];
    if (!candidate[r]) continue;
    cost[r] = scorer.Cost(std::clamp<int64_t>(overlap.blocks, 0, prompt_blocks), queue_cost[r],
                          DistanceBetween(prefill.id[r], prefill.location[r], decode_worker.id,
                                          decode_worker.location));
  }
  bool unused_sampled = false;
  const uint32_t prefill_row =
      Choose({cost, prefill_rows}, {candidate, prefill_rows}, eligible_prefill,
             /*temperature=*/0, rng, table.ties_, &unused_sampled);
  const uint32_t prefill_position = prefill.position[prefill_row];
  const WorkerState& prefill_worker = workers[prefill_position];
  decision.placement = PrefillPlacement::kDisaggregated;
  decision.prefill_worker = prefill_worker.id;
  decision.prefill_cost = cost[prefill_row];
  decision.prefill_cost_in_seconds = config.latency_model != nullptr;
  decision.prefill_overlap_blocks =
      static_cast<int32_t>(OverlapOf(overlaps, prefill_position, prompt_blocks));
  decision.link = DistanceBetween(prefill_worker.id, prefill_worker.location, decode_worker.id,
                                  decode_worker.location);
  decision.transfer_bytes = static_cast<int64_t>(transfer_bytes);
  decision.transfer_seconds = config.links.TransferSeconds(decision.link, transfer_bytes);
  return decision;
}

std::string RoutingDecision::Explain() const {
  std::string text = absl::StrFormat(
      "decode=%d cost=%.1f blocks (overlap %d, adds %d blocks, %d uncached tokens, %s of %d); "
      "prefill %s",
      decode_worker, decode_cost, decode_overlap_blocks, decode_new_blocks, uncached_tokens,
      sampled ? "sampled" : "argmin", eligible_decode_workers, PrefillPlacementName(placement));
  if (disaggregated()) {
    absl::StrAppendFormat(&text,
                          " on prefill=%d cost=%.6g %s (overlap %d blocks, transfer %d bytes "
                          "over %s in %.3g s, %d eligible)",
                          prefill_worker, prefill_cost, prefill_cost_in_seconds ? "s" : "blocks",
                          prefill_overlap_blocks, transfer_bytes, LinkDistanceName(link),
                          transfer_seconds, eligible_prefill_workers);
  }
  return text;
}

}  // namespace tandem::router
