#include "sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <queue>
#include <random>
#include <set>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "planner/planner.h"

namespace tandem::sim {

const char* InstanceRoleName(InstanceRole role) {
  switch (role) {
    case InstanceRole::kPrefill:
      return "prefill";
    case InstanceRole::kDecode:
      return "decode";
    case InstanceRole::kBoth:
      return "aggregated";
  }
  return "unknown";
}

absl::Status ValidateSimConfig(const SimConfig& c) {
  if (c.cluster.nodes <= 0 || c.cluster.gpus_per_node <= 0 || c.cluster.nodes_per_domain <= 0) {
    return absl::InvalidArgumentError(
        "cluster: nodes, gpus_per_node and nodes_per_domain must be > 0");
  }
  if (c.cost == nullptr) return absl::InvalidArgumentError("no performance model");
  int64_t gpus = 0;
  int instances = 0;
  for (const InstanceGroup& g : c.groups) {
    const std::string field = absl::StrCat("instances.", InstanceRoleName(g.role));
    if (g.count < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".count is ", g.count, "; expected >= 0"));
    }
    if (g.tensor_parallel <= 0 || g.max_batch_tokens <= 0 || g.max_batch_sequences <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": tensor_parallel, max_batch_tokens and max_batch_sequences must be > 0"));
    }
    if (g.tensor_parallel > c.cluster.gpus_per_node) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".tensor_parallel ", g.tensor_parallel,
                                                     " does not fit a node of ",
                                                     c.cluster.gpus_per_node, " GPUs"));
    }
    gpus += int64_t{g.count} * g.tensor_parallel;
    instances += g.count;
  }
  if (gpus > int64_t{c.cluster.nodes} * c.cluster.gpus_per_node) {
    return absl::InvalidArgumentError(absl::StrCat(
        "instances need ", gpus, " GPUs; the cluster has ", c.cluster.nodes, " nodes x ",
        c.cluster.gpus_per_node, " = ", int64_t{c.cluster.nodes} * c.cluster.gpus_per_node));
  }
  if (!c.instance_nodes.empty() && static_cast<int>(c.instance_nodes.size()) != instances) {
    return absl::InvalidArgumentError(absl::StrCat("instance_nodes has ", c.instance_nodes.size(),
                                                   " entries for ", instances, " instances"));
  }
  for (int node : c.instance_nodes) {
    if (node >= c.cluster.nodes) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instance_nodes: node ", node, " is outside the cluster of ", c.cluster.nodes, " nodes"));
    }
  }
  if (c.cost->KvCapacityTokens() <= 0) {
    return absl::InvalidArgumentError(
        "the model's weights leave no room for a KV cache on one instance "
        "(raise tensor_parallel or pick a GPU with more memory)");
  }
  if (c.model_layers <= 0) return absl::InvalidArgumentError("model_layers must be > 0");
  for (size_t i = 0; i < c.failures.size(); ++i) {
    const NodeFailure& f = c.failures[i];
    if (f.node < 0 || f.node >= c.cluster.nodes) {
      return absl::InvalidArgumentError(absl::StrCat("failures[", i, "].node ", f.node,
                                                     " is outside the cluster (0..",
                                                     c.cluster.nodes - 1, ")"));
    }
    if (!(f.time_s >= 0) || !std::isfinite(f.time_s)) {
      return absl::InvalidArgumentError(
          absl::StrCat("failures[", i, "].time_s is ", f.time_s, "; expected >= 0"));
    }
  }
  if (!(c.timeline_interval_s > 0)) {
    return absl::InvalidArgumentError("timeline_interval_s must be > 0");
  }
  for (double overhead : {c.overheads.first_token_seconds, c.overheads.per_token_seconds,
                          c.overheads.remote_join_seconds}) {
    if (!(overhead >= 0) || !std::isfinite(overhead)) {
      return absl::InvalidArgumentError("serving overheads must be finite and >= 0");
    }
  }
  if (!(c.trace_speedup > 0) || !std::isfinite(c.trace_speedup)) {
    return absl::InvalidArgumentError("trace_speedup must be > 0");
  }
  if (!c.workload.trace_path.empty() && c.trace.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("workload.trace '", c.workload.trace_path, "' holds no requests"));
  }
  if (c.planner.has_value()) {
    bool prefill = false, decode = false;
    for (const InstanceGroup& g : c.groups) {
      prefill = prefill || g.role == InstanceRole::kPrefill;
      decode = decode || g.role == InstanceRole::kDecode;
    }
    if (!prefill || !decode) {
      return absl::InvalidArgumentError(
          "planner: it sizes the prefill and decode roles; declare both under instances");
    }
    TANDEM_RETURN_IF_ERROR(planner::ValidatePlannerConfig(c.planner->config));
    if (!(c.planner->pod_start_delay_s >= 0)) {
      return absl::InvalidArgumentError("planner.pod_start_delay_s must be >= 0");
    }
  }
  TANDEM_RETURN_IF_ERROR(router::ValidateRoutingConfig(c.routing));
  return bench::ValidateWorkload(c.workload);
}

namespace {

constexpr int kNone = -1;

// Prefill time from the simulated instances' own step cost, for the routing policy's
// seconds-based prefill choice. A pure function, as the WorkerTable that remembers its answers
// for each prefill instance's queue requires.
class StepCostPrefillLatency final : public router::PrefillLatencyModel {
 public:
  explicit StepCostPrefillLatency(const StepCostModel& cost) : cost_(cost) {}
  double PrefillSeconds(int64_t new_tokens, int64_t cached_tokens) const override {
    if (new_tokens <= 0) return 0;
    return cost_.StepSeconds(
        {.prefill_tokens = new_tokens, .prefill_context_tokens = cached_tokens});
  }

 private:
  const StepCostModel& cost_;
};

struct Sequence {
  bench::RequestSpec request;
  double arrival_s = 0;
  double first_token_s = -1;
  double prefill_start_s = -1;
  int64_t prompt_tokens = 0;  // what is prefilled (grows on migration)
  int64_t generated = 0;      // tokens the client already has
  int64_t remaining = 0;      // tokens still to generate
  int decode = kNone;
  int prefill = kNone;
  int64_t reserved_tokens = 0;  // KV tokens reserved on the decode instance
  int64_t join_step = 0;        // decode step at which it joined the batch
  int64_t join_context = 0;     // its context then
  int running_index = kNone;    // position in its decode instance's running list
  bool transferring = false;
  bool joined = false;  // its KV is on the decode instance (running or waiting for a batch slot)
  bool alive = false;
  uint32_t generation = 0;  // tells stale events and jobs from a reused or migrated slot apart
};

struct PrefillJob {
  int seq;
  uint32_t generation;
  int64_t remaining;
  int64_t done;
  bool local;  // prefill on the decode instance (aggregated path)
};

enum class InstanceState : uint8_t { kStarting, kReady, kDraining, kGone };

struct Instance {
  InstanceRole role;
  int group;
  int tensor_parallel;
  int node;
  router::Location location;
  InstanceState state = InstanceState::kReady;
  double allocated_s = 0;  // GPUs taken
  double ready_s = 0;
  std::deque<PrefillJob> prefill_queue;
  int64_t queued_prefill_tokens = 0;
  std::deque<int> join_queue;  // sequences waiting for room in the running batch
  std::vector<int> running;    // sequence ids
  int64_t running_context = 0;
  std::priority_queue<std::pair<int64_t, uint64_t>, std::vector<std::pair<int64_t, uint64_t>>,
                      std::greater<>>
      finishing;  // (finish step, generation << 32 | sequence)
  int64_t step = 0;
  bool busy = false;
  double step_seconds = 0;
  std::vector<PrefillJob> step_chunks;
  int64_t step_decode = 0;
  int64_t reserved_tokens = 0;
  int64_t capacity_tokens = 0;
  double busy_seconds = 0;
  absl::flat_hash_map<int32_t, uint64_t> prefix_last_use;  // prefix group -> use tick
  // Load-mode planner readings for the current interval.
  double interval_ttft_sum = 0;
  int64_t interval_ttft_count = 0;
  double interval_busy = 0;
  int64_t interval_steps = 0;

  bool Serving() const { return state == InstanceState::kReady; }
  bool Holding() const { return state != InstanceState::kGone; }
};

enum class EventType : uint8_t {
  kArrival,
  kStepEnd,
  kTransferDone,
  kFailure,
  kSample,
  kPlanner,
  kInstanceReady,
  kJoinAfterTransfer
};

struct Event {
  double time;
  uint64_t order;
  EventType type;
  int a;
  int64_t b;
  bool operator>(const Event& other) const {
    return time != other.time ? time > other.time : order > other.order;
  }
};

class Simulation {
 public:
  explicit Simulation(const SimConfig& config)
      : config_(config),
        generator_(config.workload, config.seed, config.trace),
        rng_(config.seed ^ 0x5eedULL),
        prefill_latency_(*config.cost) {
    routing_ = config.routing;
    routing_.kv_bytes_per_token =
        std::max<int64_t>(1, static_cast<int64_t>(std::llround(config.cost->KvBytesPerToken())));
    routing_.links = config.cluster.links;
    if (!config.topology_aware_routing) {
      // Every link looks alike to the policy: it pairs without regard to distance.
      routing_.links.same_host = routing_.links.same_rack = routing_.links.cross_rack;
    }
    routing_.latency_model = &prefill_latency_;
  }

  absl::StatusOr<SimResult> Run() {
    auto wall_start = std::chrono::steady_clock::now();
    free_gpus_.assign(config_.cluster.nodes, config_.cluster.gpus_per_node);
    nic_tx_free_.assign(config_.cluster.nodes, 0.0);
    nic_rx_free_.assign(config_.cluster.nodes, 0.0);
    TANDEM_RETURN_IF_ERROR(PlaceInitial());
    if (config_.planner.has_value()) {
      absl::StatusOr<planner::Planner> p =
          planner::Planner::Create(config_.planner->config, config_.planner->model);
      if (!p.ok()) return p.status();
      planner_.emplace(std::move(*p));
      Push(config_.planner->config.interval_seconds, EventType::kPlanner, 0, 0);
    }
    for (const NodeFailure& f : config_.failures) Push(f.time_s, EventType::kFailure, f.node, 0);
    ScheduleNextArrival();
    Push(config_.timeline_interval_s, EventType::kSample, 0, 0);
    while (!events_.empty()) {
      Event event = events_.top();
      events_.pop();
      if (!Periodic(event.type)) --pending_work_events_;
      now_ = event.time;
      ++result_.events;
      switch (event.type) {
        case EventType::kArrival:
          OnArrival();
          break;
        case EventType::kStepEnd:
          OnStepEnd(event.a);
          break;
        case EventType::kTransferDone:
          OnTransferDone(static_cast<int>(event.b), static_cast<uint32_t>(event.a));
          break;
        case EventType::kFailure:
          OnFailure(event.a);
          break;
        case EventType::kSample:
          OnSample();
          break;
        case EventType::kPlanner:
          OnPlanner();
          break;
        case EventType::kInstanceReady:
          OnInstanceReady(event.a);
          break;
        case EventType::kJoinAfterTransfer:
          OnJoinAfterTransfer(static_cast<int>(event.b), static_cast<uint32_t>(event.a));
          break;
      }
    }
    result_.end_s = std::max(result_.end_s, last_arrival_s_);
    result_.unfinished = static_cast<uint64_t>(alive_sequences_);
    double gpu_seconds = 0;
    for (Instance& instance : instances_) {
      if (instance.Holding()) EndInstance(instance, result_.end_s);
    }
    for (auto& [name, usage] : result_.roles) gpu_seconds += usage.gpu_seconds;
    result_.gpu_hours = gpu_seconds / 3600;
    result_.wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    return std::move(result_);
  }

 private:
  static bool Periodic(EventType type) {
    return type == EventType::kSample || type == EventType::kPlanner;
  }

  void Push(double time, EventType type, int a, int64_t b) {
    if (!Periodic(type)) ++pending_work_events_;
    events_.push(Event{time, next_order_++, type, a, b});
  }

  // Periodic events keep coming while anything else can still happen; a sequence that no event
  // will ever move again would be a modeling bug, so it does not keep the clock running.
  bool WorkRemains() const {
    return pending_work_events_ > 0 && (arrivals_pending_ || alive_sequences_ > 0);
  }

  // ---- Instances ----

  int AddInstance(int group_index, int node, double ready_at) {
    const InstanceGroup& group = config_.groups[group_index];
    Instance instance;
    instance.role = group.role;
    instance.group = group_index;
    instance.tensor_parallel = group.tensor_parallel;
    instance.node = node;
    instance.location = {node, node / config_.cluster.nodes_per_domain};
    instance.capacity_tokens = config_.cost->KvCapacityTokens();
    instance.allocated_s = now_;
    instance.ready_s = ready_at;
    instance.state = ready_at <= now_ ? InstanceState::kReady : InstanceState::kStarting;
    free_gpus_[node] -= group.tensor_parallel;
    int index = static_cast<int>(instances_.size());
    instances_.push_back(std::move(instance));
    router::WorkerState state;
    state.id = static_cast<router::WorkerId>(index);
    state.role = group.role == InstanceRole::kPrefill  ? router::WorkerRole::kPrefill
                 : group.role == InstanceRole::kDecode ? router::WorkerRole::kDecode
                                                       : router::WorkerRole::kBoth;
    state.location = instances_.back().location;
    state.capacity_blocks = instances_.back().capacity_tokens / routing_.block_size;
    table_.Add(state);
    SyncState(index);
    RoleUsage& usage = result_.roles[InstanceRoleName(group.role)];
    ++usage.instances;
    usage.gpus += group.tensor_parallel;
    if (ready_at > now_) Push(ready_at, EventType::kInstanceReady, index, 0);
    return index;
  }

  // Counts the instance's GPU time and serving time up to `end` and frees its GPUs.
  void EndInstance(Instance& instance, double end) {
    RoleUsage& usage = result_.roles[InstanceRoleName(instance.role)];
    usage.gpu_seconds += instance.tensor_parallel * std::max(0.0, end - instance.allocated_s);
    usage.serving_seconds += std::max(0.0, end - std::max(instance.ready_s, instance.allocated_s));
    usage.busy_seconds += instance.busy_seconds;
    instance.busy_seconds = 0;
    instance.state = InstanceState::kGone;
    free_gpus_[instance.node] += instance.tensor_parallel;
  }

  // The node with room for `gpus` GPUs: the fullest one that fits (keeps whole nodes free).
  int FindNode(int gpus) const {
    int best = kNone;
    for (int node = 0; node < config_.cluster.nodes; ++node) {
      if (failed_nodes_.count(node) != 0 || free_gpus_[node] < gpus) continue;
      if (best == kNone || free_gpus_[node] < free_gpus_[best]) best = node;
    }
    return best;
  }

  absl::Status PlaceInitial() {
    if (!config_.instance_nodes.empty()) {
      size_t next = 0;
      for (size_t g = 0; g < config_.groups.size(); ++g) {
        for (int i = 0; i < config_.groups[g].count; ++i) {
          int node = config_.instance_nodes[next++];
          if (node < 0) continue;  // not placed
          // The placement core checked capacity; a multi-pod instance sits at its first pod's
          // node (the GPU ledger below only serves the planner, which placement excludes).
          AddInstance(static_cast<int>(g), node, 0);
        }
      }
      return absl::OkStatus();
    }
    // Fill nodes in order, groups interleaved, so prefill and decode instances share domains.
    std::vector<int> left;
    for (const InstanceGroup& group : config_.groups) left.push_back(group.count);
    int node = 0;
    bool placed = true;
    while (placed) {
      placed = false;
      for (size_t g = 0; g < config_.groups.size(); ++g) {
        if (left[g] == 0) continue;
        const int tp = config_.groups[g].tensor_parallel;
        while (node < config_.cluster.nodes && free_gpus_[node] < tp) ++node;
        if (node >= config_.cluster.nodes) {
          // Fragmentation (mixed TP sizes): take any node with room.
          int any = FindNode(tp);
          if (any == kNone) {
            return absl::InvalidArgumentError(absl::StrCat(
                "instances do not fit the cluster's nodes: no node has ", tp,
                " free GPUs left for ", InstanceRoleName(config_.groups[g].role), " instance ",
                config_.groups[g].count - left[g] + 1, " of ", config_.groups[g].count));
          }
          AddInstance(static_cast<int>(g), any, 0);
          node = config_.cluster.nodes;
        } else {
          AddInstance(static_cast<int>(g), node, 0);
        }
        --left[g];
        placed = true;
      }
    }
    return absl::OkStatus();
  }

  void SyncState(int index) {
    const Instance& instance = instances_[index];
    router::WorkerState state = table_.Get(static_cast<uint32_t>(index));
    state.ready = instance.Serving() || instance.state == InstanceState::kDraining;
    state.draining = instance.state == InstanceState::kDraining;
    state.active_decode_blocks =
        (instance.reserved_tokens + routing_.block_size - 1) / routing_.block_size;
    state.prefill_queue_requests = static_cast<int32_t>(instance.prefill_queue.size());
    state.prefill_queue_tokens = instance.queued_prefill_tokens;
    table_.Set(static_cast<uint32_t>(index), state);
  }

  void OnInstanceReady(int index) {
    Instance& instance = instances_[index];
    if (instance.state != InstanceState::kStarting) return;
    instance.state = InstanceState::kReady;
    SyncState(index);
  }

  // A draining instance leaves once it holds no work.
  void MaybeRetire(int index) {
    Instance& instance = instances_[index];
    if (instance.state != InstanceState::kDraining) return;
    if (instance.busy || !instance.prefill_queue.empty() || instance.reserved_tokens > 0 ||
        !instance.running.empty() || !instance.join_queue.empty()) {
      return;
    }
    EndInstance(instance, now_);
    SyncState(index);
  }

  // ---- Requests ----

  void ScheduleNextArrival() {
    std::optional<bench::RequestSpec> request = generator_.Next();
    if (!request.has_value()) {
      arrivals_pending_ = false;
      return;
    }
    next_request_ = *request;
    double at = request->arrival_s;
    if (!config_.workload.trace_path.empty()) at /= config_.trace_speedup;
    Push(at, EventType::kArrival, 0, 0);
  }

  int NewSequence(const bench::RequestSpec& request) {
    int id;
    if (!free_.empty()) {
      id = free_.back();
      free_.pop_back();
    } else {
      id = static_cast<int>(sequences_.size());
      sequences_.emplace_back();
    }
    Sequence& s = sequences_[id];
    uint32_t generation = s.generation + 1;
    s = Sequence{};
    s.generation = generation;
    s.request = request;
    s.request.input_tokens = std::max<int64_t>(1, request.input_tokens);
    s.request.output_tokens = std::max<int64_t>(1, request.output_tokens);
    s.arrival_s = now_;
    s.prompt_tokens = s.request.input_tokens;
    s.remaining = s.request.output_tokens;
    s.alive = true;
    ++alive_sequences_;
    return id;
  }

  void OnArrival() {
    ++result_.requests;
    ++arrivals_in_window_;
    last_arrival_s_ = now_;
    int id = NewSequence(next_request_);
    const Sequence& s = sequences_[id];
    result_.prompt_tokens += s.request.input_tokens;
    interval_.prompt_tokens += s.request.input_tokens;
    ++interval_.requests;
    ScheduleNextArrival();
    Route(id);
  }

  int64_t CachedTokens(int index, const Sequence& s) const {
    if (s.request.prefix_group < 0 || config_.prefix_cache_groups <= 0) return 0;
    const auto& cache = instances_[index].prefix_last_use;
    if (!cache.contains(s.request.prefix_group)) return 0;
    return (s.request.prefix_tokens / routing_.block_size) * routing_.block_size;
  }

  void TouchPrefix(int index, const Sequence& s) {
    if (s.request.prefix_group < 0 || config_.prefix_cache_groups <= 0) return;
    Instance& instance = instances_[index];
    auto [it, inserted] = instance.prefix_last_use.try_emplace(s.request.prefix_group, 0);
    it->second = ++prefix_tick_;
    if (!inserted) return;
    if (static_cast<size_t>(s.request.prefix_group) >= holders_.size()) {
      holders_.resize(s.request.prefix_group + 1);
    }
    holders_[s.request.prefix_group].push_back(index);
    if (static_cast<int>(instance.prefix_last_use.size()) > config_.prefix_cache_groups) {
      // Evict the least recently used group (rare: only when a new group comes in).
      auto oldest = instance.prefix_last_use.begin();
      for (auto i = instance.prefix_last_use.begin(); i != instance.prefix_last_use.end(); ++i) {
        if (i->second < oldest->second) oldest = i;
      }
      std::vector<int>& list = holders_[oldest->first];
      list.erase(std::find(list.begin(), list.end(), index));
      instance.prefix_last_use.erase(oldest);
    }
  }

  void Route(int id) {
    Sequence& s = sequences_[id];
    const int block = routing_.block_size;
    const int32_t group = s.request.prefix_group;
    const bool has_prefix = group >= 0 && static_cast<size_t>(group) < holders_.size() &&
                            config_.prefix_cache_groups > 0;
    // Only the instances caching this prefix have an overlap.
    const int32_t overlap_blocks = static_cast<int32_t>(s.request.prefix_tokens / block);
    overlaps_.clear();
    if (has_prefix) {
      for (int h : holders_[group]) overlaps_.push_back({static_cast<uint32_t>(h), overlap_blocks});
    }
    router::RouteRequest request{s.prompt_tokens, s.remaining};
    absl::StatusOr<router::RoutingDecision> decision =
        router::DecideRoute(request, table_, overlaps_, routing_, rng_);
    if (!decision.ok()) {
      if (decision.status().code() == absl::StatusCode::kResourceExhausted) {
        ++result_.rejected;
      } else {
        ++result_.failed;
      }
      Release(id);
      return;
    }
    s.decode = static_cast<int>(decision->decode_worker);
    s.reserved_tokens = s.prompt_tokens + s.remaining;
    instances_[s.decode].reserved_tokens += s.reserved_tokens;
    SyncState(s.decode);
    s.prefill_start_s = -1;
    if (decision->disaggregated()) {
      ++result_.disaggregated;
      s.prefill = static_cast<int>(decision->prefill_worker);
      int64_t cached = CachedTokens(s.prefill, s);
      result_.prefix_hit_tokens += cached;
      interval_.cached_tokens += cached;
      Enqueue(s.prefill, PrefillJob{id, s.generation,
                                    std::max<int64_t>(1, s.prompt_tokens - cached), cached, false});
    } else {
      ++result_.local_prefill;
      s.prefill = kNone;
      int64_t cached = CachedTokens(s.decode, s);
      result_.prefix_hit_tokens += cached;
      interval_.cached_tokens += cached;
      Enqueue(s.decode, PrefillJob{id, s.generation, std::max<int64_t>(1, s.prompt_tokens - cached),
                                   cached, true});
    }
  }

  bool JobLive(const PrefillJob& job) const {
    const Sequence& s = sequences_[job.seq];
    return s.alive && s.generation == job.generation;
  }

  void Enqueue(int index, PrefillJob job) {
    Instance& instance = instances_[index];
    instance.queued_prefill_tokens += job.remaining;
    instance.prefill_queue.push_back(job);
    SyncState(index);
    StartStep(index);
  }

  void StartStep(int index) {
    Instance& instance = instances_[index];
    if (instance.busy || !instance.Holding() || instance.state == InstanceState::kStarting) return;
    const InstanceGroup& group = config_.groups[instance.group];
    instance.step_decode = static_cast<int64_t>(instance.running.size());
    int64_t budget = group.max_batch_tokens - instance.step_decode;
    instance.step_chunks.clear();
    StepWork work;
    work.decode_sequences = instance.step_decode;
    work.decode_context_tokens = instance.running_context;
    while (budget > 0 && !instance.prefill_queue.empty() && instance.step_chunks.size() < 16) {
      PrefillJob& job = instance.prefill_queue.front();
      if (!JobLive(job)) {
        instance.queued_prefill_tokens -= job.remaining;
        instance.prefill_queue.pop_front();
        continue;
      }
      Sequence& s = sequences_[job.seq];
      if (s.prefill_start_s < 0) s.prefill_start_s = now_;
      int64_t take = std::min(job.remaining, budget);
      instance.step_chunks.push_back(
          PrefillJob{job.seq, job.generation, take, job.done, job.local});
      work.prefill_tokens += take;
      work.prefill_context_tokens = std::max(work.prefill_context_tokens, job.done);
      budget -= take;
      job.remaining -= take;
      job.done += take;
      instance.queued_prefill_tokens -= take;
      if (job.remaining == 0) instance.prefill_queue.pop_front();
    }
    SyncState(index);
    if (work.decode_sequences == 0 && work.prefill_tokens == 0) {
      MaybeRetire(index);
      return;
    }
    instance.busy = true;
    instance.step_seconds =
        config_.cost->StepSeconds(work) +
        config_.overheads.per_token_seconds * static_cast<double>(work.decode_sequences);
    Push(now_ + instance.step_seconds, EventType::kStepEnd, index, 0);
  }

  void OnStepEnd(int index) {
    Instance& instance = instances_[index];
    if (!instance.Holding()) {
      instance.busy = false;
      return;
    }
    // `busy` stays set while the step's results are applied, so that joins and finishes below
    // do not start the next step before this one is accounted for.
    instance.busy_seconds += instance.step_seconds;
    instance.interval_busy += instance.step_seconds;
    ++instance.interval_steps;
    ++instance.step;
    // Every sequence in the decode batch produced one more token.
    if (instance.step_decode > 0) {
      result_.itl.Add(instance.step_seconds, static_cast<uint64_t>(instance.step_decode));
      interval_.itl_sum += instance.step_seconds * instance.step_decode;
      interval_.output_tokens += instance.step_decode;
      result_.output_tokens += instance.step_decode;
      instance.running_context += instance.step_decode;
    }
    while (!instance.finishing.empty() && instance.finishing.top().first <= instance.step) {
      uint64_t key = instance.finishing.top().second;
      instance.finishing.pop();
      int id = static_cast<int>(key & 0xffffffffu);
      Sequence& s = sequences_[id];
      if (!s.alive || (key >> 32) != s.generation || s.decode != index ||
          s.running_index == kNone) {
        continue;
      }
      Finish(id);
    }
    for (const PrefillJob& chunk : instance.step_chunks) {
      if (!JobLive(chunk)) continue;
      Sequence& s = sequences_[chunk.seq];
      if (chunk.done + chunk.remaining < s.prompt_tokens) continue;
      // The whole prompt is in: the first token is sampled at the end of this step.
      TouchPrefix(index, s);
      if (chunk.local) {
        FirstToken(s, index);
        Join(index, chunk.seq);
      } else {
        StartTransfer(index, chunk.seq);
      }
    }
    instance.busy = false;
    StartStep(index);
  }

  void FirstToken(Sequence& s, int prefill_index) {
    if (s.first_token_s >= 0) {
      // A migrated request: the client has its first token; this one continues the stream.
      ++s.generated;
      ++result_.output_tokens;
      ++interval_.output_tokens;
      return;
    }
    s.first_token_s = now_;
    s.generated = 1;
    ++result_.output_tokens;
    ++interval_.output_tokens;
    double ttft = now_ - s.arrival_s + config_.overheads.first_token_seconds;
    result_.ttft.Add(ttft);
    interval_ttft_.Add(ttft);
    interval_.ttft_sum += ttft;
    ++interval_.ttft_count;
    Instance& instance = instances_[prefill_index];
    instance.interval_ttft_sum += ttft;
    ++instance.interval_ttft_count;
  }

  void StartTransfer(int prefill_index, int id) {
    Sequence& s = sequences_[id];
    const Instance& prefill = instances_[prefill_index];
    const Instance& decode = instances_[s.decode];
    s.transferring = true;
    int64_t missing = std::max<int64_t>(0, s.prompt_tokens - CachedTokens(s.decode, s));
    double bytes = static_cast<double>(missing) * config_.cost->KvBytesPerToken();
    router::LinkDistance distance = prefill.node == decode.node
                                        ? router::LinkDistance::kSameHost
                                        : router::Distance(prefill.location, decode.location);
    double seconds = config_.cluster.links.TransferSeconds(distance, bytes);
    double done = now_;
    if (seconds > 0) {
      // Layer-wise: KV leaves as each layer finishes, so the transfer ran alongside the prompt's
      // compute; what is left is the last layer's share, or the part the link could not keep up
      // with, later still when earlier transfers hold the same network interfaces.
      double start = std::max(s.prefill_start_s, 0.0);
      double link_done = start + seconds;
      if (distance != router::LinkDistance::kSameHost) {
        // Full duplex NICs: the sender's transmit queue and the receiver's receive queue, each
        // first-come first-served; the transfer ends when the slower of the two has moved it.
        double tx_done = std::max(start, nic_tx_free_[prefill.node]) + seconds;
        double rx_done = std::max(start, nic_rx_free_[decode.node]) + seconds;
        nic_tx_free_[prefill.node] = tx_done;
        nic_rx_free_[decode.node] = rx_done;
        link_done = std::max(tx_done, rx_done);
      }
      done = std::max(now_ + seconds / config_.model_layers, link_done);
    }
    result_.transfer_bytes += bytes;
    result_.transfer.Add(done - now_);
    Push(done, EventType::kTransferDone, static_cast<int>(s.generation), id);
    // The prefill instance may retire once its last job left.
    MaybeRetire(prefill_index);
  }

  void OnTransferDone(int id, uint32_t generation) {
    Sequence& s = sequences_[id];
    if (!s.alive || s.generation != generation || !s.transferring) return;
    s.transferring = false;
    TouchPrefix(s.decode, s);
    FirstToken(s, s.prefill);
    const double join = config_.overheads.remote_join_seconds;
    if (join <= 0) {
      Join(s.decode, id);
      return;
    }
    // The KV is on the decode instance (a prefill failure no longer matters); the sequence
    // enters its batch once the decode worker has taken the prefill's answer.
    s.joined = true;
    Push(now_ + join, EventType::kJoinAfterTransfer, static_cast<int>(s.generation), id);
  }

  void OnJoinAfterTransfer(int id, uint32_t generation) {
    Sequence& s = sequences_[id];
    if (!s.alive || s.generation != generation || s.running_index != kNone) return;
    Join(s.decode, id);
  }

  void Join(int index, int id) {
    Instance& instance = instances_[index];
    Sequence& s = sequences_[id];
    s.joined = true;
    if (s.remaining <= 1) {
      Finish(id);
      return;
    }
    if (static_cast<int>(instance.running.size()) >=
        config_.groups[instance.group].max_batch_sequences) {
      instance.join_queue.push_back(id);
      return;
    }
    s.running_index = static_cast<int>(instance.running.size());
    instance.running.push_back(id);
    s.join_step = instance.step;
    s.join_context = s.prompt_tokens + 1;
    instance.running_context += s.join_context;
    // The first token came with the prefill; remaining - 1 more steps finish it.
    instance.finishing.push(
        {instance.step + (s.remaining - 1), (uint64_t{s.generation} << 32) | uint32_t(id)});
    StartStep(index);
  }

  // Removes a running sequence from its batch; returns the tokens it generated while running.
  int64_t RemoveRunning(Instance& instance, Sequence& s) {
    if (s.running_index == kNone) return 0;
    int64_t steps = instance.step - s.join_step;
    int last = instance.running.back();
    instance.running[s.running_index] = last;
    sequences_[last].running_index = s.running_index;
    instance.running.pop_back();
    instance.running_context -= s.join_context + steps;
    s.running_index = kNone;
    return steps;
  }

  void Finish(int id) {
    Sequence& s = sequences_[id];
    const int decode_index = s.decode;
    Instance& decode = instances_[decode_index];
    RemoveRunning(decode, s);
    decode.reserved_tokens -= s.reserved_tokens;
    SyncState(decode_index);
    // The serving path's fixed latency delays the whole stream, first token to last.
    const double path = config_.overheads.first_token_seconds;
    double e2e = now_ - s.arrival_s + path;
    double ttft = s.first_token_s < 0 ? e2e : s.first_token_s - s.arrival_s + path;
    double tpot = s.request.output_tokens > 1
                      ? (now_ - s.first_token_s) / static_cast<double>(s.request.output_tokens - 1)
                      : 0;
    result_.e2e.Add(e2e);
    if (s.request.output_tokens > 1) result_.tpot.Add(tpot);
    ++result_.completed;
    ++interval_.completed;
    bool met = bench::MeetsSlo(config_.slo, ttft, tpot, e2e);
    if (met) {
      ++result_.slo_met;
      ++interval_.slo_met;
    }
    if (config_.slo.ttft_s <= 0 || ttft <= config_.slo.ttft_s) ++result_.ttft_met;
    if (config_.slo.tpot_s <= 0 || tpot <= config_.slo.tpot_s) ++result_.tpot_met;
    result_.end_s = std::max(result_.end_s, now_);
    Release(id);
    // Room freed: let a waiting sequence in.
    while (!decode.join_queue.empty() && static_cast<int>(decode.running.size()) <
                                             config_.groups[decode.group].max_batch_sequences) {
      int next = decode.join_queue.front();
      decode.join_queue.pop_front();
      if (sequences_[next].alive && sequences_[next].decode == decode_index)
        Join(decode_index, next);
    }
    MaybeRetire(decode_index);
  }

  void Release(int id) {
    sequences_[id].alive = false;
    --alive_sequences_;
    free_.push_back(id);
  }

  void OnFailure(int node) {
    failed_nodes_.insert(node);
    for (size_t i = 0; i < instances_.size(); ++i) {
      Instance& instance = instances_[i];
      if (instance.node != node || !instance.Holding()) continue;
      EndInstance(instance, now_);
      instance.prefill_queue.clear();
      instance.queued_prefill_tokens = 0;
      SyncState(static_cast<int>(i));
    }
    free_gpus_[node] = 0;  // the node is gone for good
    std::vector<int> affected;
    for (size_t id = 0; id < sequences_.size(); ++id) {
      const Sequence& s = sequences_[id];
      if (!s.alive) continue;
      bool decode_dead = s.decode != kNone && !instances_[s.decode].Holding();
      // A prompt still computing or in flight from a dead prefill instance is lost too.
      bool prefill_dead = s.prefill != kNone && !instances_[s.prefill].Holding() && !s.joined;
      if (decode_dead || prefill_dead) affected.push_back(static_cast<int>(id));
    }
    for (int id : affected) {
      Sequence& s = sequences_[id];
      Instance& decode = instances_[s.decode];
      s.generated += RemoveRunning(decode, s);
      if (decode.Holding()) {
        decode.reserved_tokens -= s.reserved_tokens;
        SyncState(s.decode);
      }
      // Resubmit prompt + generated tokens elsewhere; the client keeps its stream.
      s.prompt_tokens = s.request.input_tokens + s.generated;
      s.remaining = std::max<int64_t>(1, s.request.output_tokens - s.generated);
      s.transferring = false;
      s.joined = false;
      s.decode = s.prefill = kNone;
      s.reserved_tokens = 0;
      ++s.generation;
      ++result_.migrated;
      Route(id);
    }
  }

  // ---- Sampling and planning ----

  void OnSample() {
    TimelinePoint point;
    point.time_s = now_;
    point.arrivals_per_second = arrivals_in_window_ / config_.timeline_interval_s;
    arrivals_in_window_ = 0;
    for (const Instance& instance : instances_) {
      if (!instance.Holding()) continue;
      point.gpus_allocated += instance.tensor_parallel;
      if (!instance.Serving()) continue;
      switch (instance.role) {
        case InstanceRole::kPrefill:
          ++point.prefill_instances;
          break;
        case InstanceRole::kDecode:
          ++point.decode_instances;
          break;
        case InstanceRole::kBoth:
          ++point.aggregated_instances;
          break;
      }
      point.running_sequences += static_cast<int64_t>(instance.running.size());
      point.queued_prefill_tokens += instance.queued_prefill_tokens;
    }
    point.ttft_p90_s = interval_ttft_.Percentile(90);
    interval_ttft_ = bench::LatencyDigest();
    point.slo_attainment = sample_completed_ == result_.completed
                               ? 1.0
                               : double(result_.slo_met - sample_slo_met_) /
                                     double(result_.completed - sample_completed_);
    sample_completed_ = result_.completed;
    sample_slo_met_ = result_.slo_met;
    result_.timeline.push_back(point);
    if (WorkRemains()) Push(now_ + config_.timeline_interval_s, EventType::kSample, 0, 0);
  }

  void OnPlanner() {
    const double interval = config_.planner->config.interval_seconds;
    planner::Observation o;
    o.time_seconds = now_;
    int prefill_holding = 0, decode_holding = 0;
    int64_t active = 0;
    double context = 0;
    for (Instance& instance : instances_) {
      bool counted = instance.state == InstanceState::kStarting || instance.Serving();
      if (instance.role == InstanceRole::kPrefill && counted) ++prefill_holding;
      if (instance.role == InstanceRole::kDecode && counted) ++decode_holding;
      if (instance.Serving()) {
        if (instance.role == InstanceRole::kPrefill) {
          o.prefill_load.push_back({static_cast<double>(instance.queued_prefill_tokens),
                                    instance.interval_ttft_count > 0
                                        ? instance.interval_ttft_sum / instance.interval_ttft_count
                                        : 0});
        } else if (instance.role == InstanceRole::kDecode) {
          o.decode_load.push_back(
              {static_cast<double>(instance.reserved_tokens) / routing_.block_size,
               instance.interval_steps > 0 ? instance.interval_busy / instance.interval_steps : 0});
        }
        active += static_cast<int64_t>(instance.running.size());
        context += static_cast<double>(instance.running_context);
      }
      instance.interval_ttft_sum = 0;
      instance.interval_ttft_count = 0;
      instance.interval_busy = 0;
      instance.interval_steps = 0;
    }
    o.prefill_instances = prefill_holding;
    o.decode_instances = decode_holding;
    o.prompt_tokens_per_second = interval_.prompt_tokens / interval;
    o.prefix_hit_rate =
        interval_.prompt_tokens > 0
            ? std::min(1.0, double(interval_.cached_tokens) / interval_.prompt_tokens)
            : 0;
    o.mean_prompt_tokens =
        interval_.requests > 0 ? double(interval_.prompt_tokens) / interval_.requests : 0;
    o.output_tokens_per_second = interval_.output_tokens / interval;
    o.active_sequences = static_cast<double>(active);
    o.mean_context_tokens = active > 0 ? context / active : 0;
    o.ttft_seconds = interval_.ttft_count > 0 ? interval_.ttft_sum / interval_.ttft_count : 0;
    o.itl_seconds = interval_.output_tokens > interval_.ttft_count
                        ? interval_.itl_sum / double(interval_.output_tokens - interval_.ttft_count)
                        : 0;
    interval_ = Interval{};
    planner::Decision decision = planner_->Decide(o);
    ++result_.planner_decisions;
    Resize(InstanceRole::kPrefill, prefill_holding, decision.prefill.target);
    Resize(InstanceRole::kDecode, decode_holding, decision.decode.target);
    if (WorkRemains()) Push(now_ + interval, EventType::kPlanner, 0, 0);
  }

  int GroupOf(InstanceRole role) const {
    for (size_t g = 0; g < config_.groups.size(); ++g) {
      if (config_.groups[g].role == role) return static_cast<int>(g);
    }
    return kNone;
  }

  void Resize(InstanceRole role, int current, int target) {
    const int group = GroupOf(role);
    if (group == kNone) return;
    for (int n = current; n < target; ++n) {
      int node = FindNode(config_.groups[group].tensor_parallel);
      if (node == kNone) {
        ++result_.scale_outs_without_room;
        break;
      }
      AddInstance(group, node, now_ + config_.planner->pod_start_delay_s);
      ++result_.scale_outs;
    }
    for (int n = current; n > target; --n) {
      // Drain a starting instance first (it holds no work), else the least loaded one.
      int victim = kNone;
      for (size_t i = 0; i < instances_.size(); ++i) {
        const Instance& instance = instances_[i];
        if (instance.role != role) continue;
        if (instance.state == InstanceState::kStarting) {
          victim = static_cast<int>(i);
          break;
        }
        if (!instance.Serving()) continue;
        if (victim == kNone ||
            instance.reserved_tokens + instance.queued_prefill_tokens <
                instances_[victim].reserved_tokens + instances_[victim].queued_prefill_tokens) {
          victim = static_cast<int>(i);
        }
      }
      if (victim == kNone) break;
      instances_[victim].state = InstanceState::kDraining;
      ++result_.scale_ins;
      SyncState(victim);
      MaybeRetire(victim);
    }
  }

  struct Interval {
    uint64_t requests = 0;
    uint64_t prompt_tokens = 0;
    uint64_t cached_tokens = 0;
    uint64_t output_tokens = 0;
    double itl_sum = 0;
    double ttft_sum = 0;
    uint64_t ttft_count = 0;
    uint64_t completed = 0;
    uint64_t slo_met = 0;
  };

  const SimConfig& config_;
  bench::WorkloadGenerator generator_;
  std::mt19937_64 rng_;
  StepCostPrefillLatency prefill_latency_;
  router::RoutingConfig routing_;
  std::optional<planner::Planner> planner_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t next_order_ = 0;
  double now_ = 0;
  bench::RequestSpec next_request_;
  bool arrivals_pending_ = true;
  int64_t pending_work_events_ = 0;
  double last_arrival_s_ = 0;
  int64_t alive_sequences_ = 0;
  std::vector<Instance> instances_;
  router::WorkerTable table_;  // the routing policy's view: position i is instances_[i]
  std::vector<router::WorkerOverlap> overlaps_;  // scratch: one request's prefix holders
  std::vector<int> free_gpus_;
  std::set<int> failed_nodes_;
  std::vector<Sequence> sequences_;
  std::vector<int> free_;
  std::vector<std::vector<int>> holders_;  // prefix group -> instances caching it
  uint64_t prefix_tick_ = 0;
  std::vector<double> nic_tx_free_, nic_rx_free_;  // when each node's NIC is next free
  uint64_t arrivals_in_window_ = 0;
  Interval interval_;
  uint64_t sample_completed_ = 0;
  uint64_t sample_slo_met_ = 0;
  bench::LatencyDigest interval_ttft_;
  SimResult result_;
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const SimConfig& config) {
  TANDEM_RETURN_IF_ERROR(ValidateSimConfig(config));
  Simulation simulation(config);
  return simulation.Run();
}

double WorkloadRate(const SimConfig& config) {
  if (config.workload.trace_path.empty()) return config.workload.arrivals.rate;
  if (config.trace.size() < 2) return 0;
  double span = config.trace.back().arrival_s - config.trace.front().arrival_s;
  return span > 0 ? (config.trace.size() - 1) / span : 0;
}

absl::StatusOr<GoodputResult> FindGoodput(const SimConfig& config, const GoodputSearch& search) {
  if (!(search.low > 0) || !(search.high > search.low) || search.iterations < 1 ||
      !(search.attainment > 0 && search.attainment <= 1)) {
    return absl::InvalidArgumentError(
        "goodput search: need 0 < low < high, iterations >= 1 and 0 < attainment <= 1");
  }
  const double natural = WorkloadRate(config);
  if (!config.workload.trace_path.empty() && !(natural > 0)) {
    return absl::InvalidArgumentError("goodput search: the trace spans no time");
  }
  GoodputResult out;
  auto attained = [&](double rate) -> absl::StatusOr<bool> {
    SimConfig c = config;
    if (c.workload.trace_path.empty()) {
      c.workload.arrivals.rate = rate;
    } else {
      c.trace_speedup = rate / natural;
    }
    TANDEM_ASSIGN_OR_RETURN(SimResult result, Simulate(c));
    out.probes.emplace_back(rate, result.SloAttainment());
    return result.SloAttainment() >= search.attainment;
  };
  TANDEM_ASSIGN_OR_RETURN(bool at_low, attained(search.low));
  if (!at_low) return out;
  TANDEM_ASSIGN_OR_RETURN(bool at_high, attained(search.high));
  if (at_high) {
    out.rate = search.high;
    out.at_upper_bound = true;
    return out;
  }
  double low = search.low, high = search.high;
  for (int i = 0; i < search.iterations; ++i) {
    double mid = std::sqrt(low * high);  // rates span decades: bisect in log space
    TANDEM_ASSIGN_OR_RETURN(bool ok, attained(mid));
    (ok ? low : high) = mid;
  }
  out.rate = low;
  return out;
}

}  // namespace tandem::sim
