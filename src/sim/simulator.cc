#include "sim/simulator.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <queue>
#include <random>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

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
  if (c.cluster.nodes <= 0 || c.cluster.gpus_per_node <= 0 || c.cluster.nodes_per_rack <= 0) {
    return absl::InvalidArgumentError(
        "cluster: nodes, gpus_per_node and nodes_per_rack must be > 0");
  }
  if (c.cost == nullptr) return absl::InvalidArgumentError("no performance model");
  int gpus = 0;
  bool has_decode = false;
  for (const InstanceGroup& g : c.groups) {
    if (g.count < 0 || g.tensor_parallel <= 0 || g.max_batch_tokens <= 0 ||
        g.max_batch_sequences <= 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instances.", InstanceRoleName(g.role),
          ": count >= 0, tensor_parallel, max_batch_tokens and max_batch_sequences > 0"));
    }
    if (g.tensor_parallel > c.cluster.gpus_per_node) {
      return absl::InvalidArgumentError(absl::StrCat(
          "instances.", InstanceRoleName(g.role), ".tensor_parallel ", g.tensor_parallel,
          " does not fit a node of ", c.cluster.gpus_per_node, " GPUs"));
    }
    gpus += g.count * g.tensor_parallel;
    if (g.role != InstanceRole::kPrefill && g.count > 0) has_decode = true;
  }
  if (!has_decode) {
    return absl::InvalidArgumentError("instances: at least one decode or aggregated instance");
  }
  if (gpus > c.cluster.nodes * c.cluster.gpus_per_node) {
    return absl::InvalidArgumentError(absl::StrCat("instances need ", gpus,
                                                   " GPUs; the cluster has ",
                                                   c.cluster.nodes * c.cluster.gpus_per_node));
  }
  if (c.cost->KvCapacityTokens() <= 0) {
    return absl::InvalidArgumentError(
        "the model's weights do not leave room for any KV cache on one instance "
        "(raise tensor_parallel or pick a larger GPU)");
  }
  for (const NodeFailure& f : c.failures) {
    if (f.node < 0 || f.node >= c.cluster.nodes || f.time_s < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("failures: node ", f.node, " at ", f.time_s, " s is outside the cluster"));
    }
  }
  if (!(c.timeline_interval_s > 0)) {
    return absl::InvalidArgumentError("timeline_interval_s must be > 0");
  }
  absl::Status routing = router::ValidateRoutingConfig(c.routing);
  if (!routing.ok()) return routing;
  return bench::ValidateWorkload(c.workload);
}

namespace {

constexpr int kNone = -1;

struct Sequence {
  bench::RequestSpec request;
  double arrival_s = 0;
  double first_token_s = -1;
  int64_t prompt_tokens = 0;  // what is prefilled (grows on migration)
  int64_t generated = 0;      // tokens the client already has
  int64_t remaining = 0;      // tokens still to generate
  int decode = kNone;
  int prefill = kNone;
  int64_t reserved_tokens = 0;  // KV tokens reserved on the decode instance
  int64_t context = 0;          // tokens in its KV on the decode instance while running
  int64_t finish_step = 0;
  int running_index = kNone;  // position in its decode instance's running list
  bool transferring = false;
  bool alive = false;
  int migrations = 0;
  uint32_t generation = 0;  // tells stale heap entries from a reused slot apart
};

struct PrefillJob {
  int seq;
  int64_t remaining;
  int64_t done;
  bool local;  // prefill on the decode instance (aggregated path)
};

struct Instance {
  InstanceRole role;
  const InstanceGroup* group;
  int node;
  router::Location location;
  bool alive = true;
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
  std::vector<int32_t> prefix_groups;  // LRU, most recent last
};

enum class EventType : uint8_t { kArrival, kStepEnd, kTransferDone, kFailure, kSample };

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
        rng_(config.seed ^ 0x5eed) {}

  absl::StatusOr<SimResult> Run() {
    auto wall_start = std::chrono::steady_clock::now();
    Place();
    nic_free_.assign(config_.cluster.nodes, 0.0);
    for (const NodeFailure& f : config_.failures) Push(f.time_s, EventType::kFailure, f.node, 0);
    ScheduleNextArrival();
    Push(config_.timeline_interval_s, EventType::kSample, 0, 0);
    while (!events_.empty()) {
      Event event = events_.top();
      events_.pop();
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
          OnTransferDone(static_cast<int>(event.b));
          break;
        case EventType::kFailure:
          OnFailure(event.a);
          break;
        case EventType::kSample:
          OnSample();
          break;
      }
    }
    for (const Instance& instance : instances_) {
      RoleUsage& usage = result_.roles[InstanceRoleName(instance.role)];
      usage.busy_seconds += instance.busy_seconds;
    }
    double gpus = 0;
    for (const auto& [name, usage] : result_.roles) gpus += usage.gpus;
    result_.gpu_hours = gpus * result_.makespan_s / 3600;
    result_.wall_seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();
    return std::move(result_);
  }

 private:
  void Push(double time, EventType type, int a, int64_t b) {
    events_.push(Event{time, next_order_++, type, a, b});
  }

  // Instances fill GPUs node by node in the order their groups are listed, interleaving
  // groups so prefill and decode instances share racks.
  void Place() {
    std::vector<std::pair<const InstanceGroup*, int>> pending;
    for (const InstanceGroup& group : config_.groups) pending.emplace_back(&group, group.count);
    int node = 0, used = 0;
    bool placed = true;
    while (placed) {
      placed = false;
      for (auto& [group, left] : pending) {
        if (left == 0) continue;
        if (used + group->tensor_parallel > config_.cluster.gpus_per_node) {
          ++node;
          used = 0;
        }
        Instance instance;
        instance.role = group->role;
        instance.group = group;
        instance.node = node;
        instance.location = {node, node / config_.cluster.nodes_per_rack};
        instance.capacity_tokens = config_.cost->KvCapacityTokens();
        instances_.push_back(std::move(instance));
        RoleUsage& usage = result_.roles[InstanceRoleName(group->role)];
        ++usage.instances;
        usage.gpus += group->tensor_parallel;
        used += group->tensor_parallel;
        --left;
        placed = true;
      }
    }
  }

  void ScheduleNextArrival() {
    std::optional<bench::RequestSpec> request = generator_.Next();
    if (!request.has_value()) return;
    next_request_ = *request;
    Push(request->arrival_s, EventType::kArrival, 0, 0);
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
    s.arrival_s = now_;
    s.prompt_tokens = request.input_tokens;
    s.remaining = request.output_tokens;
    s.alive = true;
    return id;
  }

  void OnArrival() {
    ++result_.requests;
    ++arrivals_in_window_;
    int id = NewSequence(next_request_);
    ScheduleNextArrival();
    Route(id);
  }

  int32_t CachedBlocks(const Instance& instance, const Sequence& s) const {
    if (s.request.prefix_group < 0) return 0;
    const auto& groups = instance.prefix_groups;
    if (std::find(groups.begin(), groups.end(), s.request.prefix_group) == groups.end()) return 0;
    return static_cast<int32_t>(s.request.prefix_tokens / config_.routing.block_size);
  }

  void TouchPrefix(Instance& instance, const Sequence& s) {
    if (s.request.prefix_group < 0 || config_.prefix_cache_groups <= 0) return;
    auto& groups = instance.prefix_groups;
    auto it = std::find(groups.begin(), groups.end(), s.request.prefix_group);
    if (it != groups.end()) groups.erase(it);
    groups.push_back(s.request.prefix_group);
    if (static_cast<int>(groups.size()) > config_.prefix_cache_groups) groups.erase(groups.begin());
  }

  void Route(int id) {
    Sequence& s = sequences_[id];
    const int block = config_.routing.block_size;
    int64_t need = s.prompt_tokens + s.remaining;
    states_.clear();
    for (size_t i = 0; i < instances_.size(); ++i) {
      const Instance& instance = instances_[i];
      if (!instance.alive) continue;
      router::WorkerState state;
      state.id = i;
      state.role = instance.role == InstanceRole::kPrefill  ? router::WorkerRole::kPrefill
                   : instance.role == InstanceRole::kDecode ? router::WorkerRole::kDecode
                                                            : router::WorkerRole::kBoth;
      state.location = instance.location;
      state.active_decode_blocks = (instance.reserved_tokens + block - 1) / block;
      state.capacity_blocks = instance.capacity_tokens / block;
      state.prefill_queue_requests = static_cast<int32_t>(instance.prefill_queue.size());
      state.prefill_queue_tokens = instance.queued_prefill_tokens;
      state.overlap_blocks = CachedBlocks(instance, s);
      states_.push_back(state);
    }
    router::RouteRequest request{s.prompt_tokens, s.remaining};
    absl::StatusOr<router::RoutingDecision> decision =
        router::DecideRoute(request, states_, config_.routing, rng_);
    if (!decision.ok()) {
      if (decision.status().code() == absl::StatusCode::kResourceExhausted) {
        ++result_.rejected;
      } else {
        ++result_.failed;
      }
      Release(id);
      return;
    }
    Instance& decode = instances_[decision->decode_worker];
    s.decode = static_cast<int>(decision->decode_worker);
    s.reserved_tokens = need;
    decode.reserved_tokens += need;
    int64_t cached_on_decode = CachedBlocks(decode, s) * int64_t{block};
    if (decision->disaggregated()) {
      ++result_.disaggregated;
      Instance& prefill = instances_[decision->prefill_worker];
      s.prefill = static_cast<int>(decision->prefill_worker);
      int64_t cached = CachedBlocks(prefill, s) * int64_t{block};
      Enqueue(s.prefill,
              PrefillJob{id, std::max<int64_t>(1, s.prompt_tokens - cached), cached, false});
      (void)prefill;
    } else {
      ++result_.local_prefill;
      s.prefill = kNone;
      Enqueue(s.decode, PrefillJob{id, std::max<int64_t>(1, s.prompt_tokens - cached_on_decode),
                                   cached_on_decode, true});
    }
  }

  void Enqueue(int index, PrefillJob job) {
    Instance& instance = instances_[index];
    instance.queued_prefill_tokens += job.remaining;
    instance.prefill_queue.push_back(job);
    StartStep(index);
  }

  void StartStep(int index) {
    Instance& instance = instances_[index];
    if (instance.busy || !instance.alive) return;
    const InstanceGroup& group = *instance.group;
    instance.step_decode = static_cast<int64_t>(instance.running.size());
    int64_t budget = group.max_batch_tokens - instance.step_decode;
    instance.step_chunks.clear();
    StepWork work;
    work.decode_sequences = instance.step_decode;
    work.decode_context_tokens = instance.running_context;
    while (budget > 0 && !instance.prefill_queue.empty() && instance.step_chunks.size() < 8) {
      PrefillJob& job = instance.prefill_queue.front();
      if (!sequences_[job.seq].alive) {
        instance.queued_prefill_tokens -= job.remaining;
        instance.prefill_queue.pop_front();
        continue;
      }
      int64_t take = std::min(job.remaining, budget);
      instance.step_chunks.push_back(PrefillJob{job.seq, take, job.done, job.local});
      work.prefill_tokens += take;
      work.prefill_context_tokens = std::max(work.prefill_context_tokens, job.done);
      budget -= take;
      job.remaining -= take;
      job.done += take;
      instance.queued_prefill_tokens -= take;
      if (job.remaining == 0) instance.prefill_queue.pop_front();
    }
    if (work.decode_sequences == 0 && work.prefill_tokens == 0) return;
    instance.busy = true;
    instance.step_seconds = config_.cost->StepSeconds(work);
    Push(now_ + instance.step_seconds, EventType::kStepEnd, index, 0);
  }

  void OnStepEnd(int index) {
    Instance& instance = instances_[index];
    instance.busy = false;
    if (!instance.alive) return;
    instance.busy_seconds += instance.step_seconds;
    ++instance.step;
    // Every sequence in the decode batch produced one more token.
    if (instance.step_decode > 0) {
      result_.itl.Add(instance.step_seconds, static_cast<uint64_t>(instance.step_decode));
      instance.running_context += instance.step_decode;
      for (int id : instance.running) sequences_[id].context += 1;
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
      s.generated = s.request.output_tokens;
      Finish(id);
    }
    for (const PrefillJob& chunk : instance.step_chunks) {
      Sequence& s = sequences_[chunk.seq];
      if (!s.alive || chunk.done + chunk.remaining < s.prompt_tokens) continue;
      // The whole prompt is in: the first token is sampled at the end of this step.
      TouchPrefix(instance, s);
      if (chunk.local) {
        if (s.first_token_s < 0) {
          s.first_token_s = now_;
          result_.ttft.Add(now_ - s.arrival_s);
        }
        Join(index, chunk.seq);
      } else {
        StartTransfer(index, chunk.seq, instance.step_seconds);
      }
    }
    StartStep(index);
  }

  void StartTransfer(int prefill_index, int id, double last_step_seconds) {
    Sequence& s = sequences_[id];
    Instance& prefill = instances_[prefill_index];
    Instance& decode = instances_[s.decode];
    s.transferring = true;
    int64_t cached_on_decode = CachedBlocks(decode, s) * int64_t{config_.routing.block_size};
    double bytes = static_cast<double>(std::max<int64_t>(0, s.prompt_tokens - cached_on_decode)) *
                   config_.cost->KvBytesPerToken();
    router::LinkDistance distance = router::Distance(prefill.location, decode.location);
    double seconds = config_.cluster.links.TransferSeconds(distance, bytes);
    double done = now_;
    if (seconds > 0) {
      // Layer-wise: the transfer ran alongside the prompt's compute; what is left is the part
      // the link could not hide, delayed further by earlier transfers through the same NICs.
      int src = prefill.node, dst = decode.node;
      double link_start = std::max({now_ - last_step_seconds, nic_free_[src], nic_free_[dst]});
      done = std::max(now_ + seconds / 32, link_start + seconds);
      nic_free_[src] = std::max(nic_free_[src], done);
      nic_free_[dst] = std::max(nic_free_[dst], done);
    }
    result_.transfer_bytes += bytes;
    result_.transfer.Add(done - now_);
    Push(done, EventType::kTransferDone, 0, id);
  }

  void OnTransferDone(int id) {
    Sequence& s = sequences_[id];
    if (!s.alive || !s.transferring) return;
    s.transferring = false;
    if (!instances_[s.decode].alive) return;  // migrated by the failure handler
    TouchPrefix(instances_[s.decode], s);
    if (s.first_token_s < 0) {
      s.first_token_s = now_;
      result_.ttft.Add(now_ - s.arrival_s);
    }
    Join(s.decode, id);
  }

  void Join(int index, int id) {
    Instance& instance = instances_[index];
    Sequence& s = sequences_[id];
    if (s.remaining <= 1) {
      s.generated = s.request.output_tokens;
      s.decode = index;
      Finish(id);
      return;
    }
    if (static_cast<int>(instance.running.size()) >= instance.group->max_batch_sequences) {
      instance.join_queue.push_back(id);
      return;
    }
    s.running_index = static_cast<int>(instance.running.size());
    instance.running.push_back(id);
    s.context = s.prompt_tokens + 1;
    instance.running_context += s.context;
    // The first token came with the prefill; remaining - 1 more steps finish it.
    s.finish_step = instance.step + (s.remaining - 1);
    instance.finishing.push({s.finish_step, (uint64_t{s.generation} << 32) | uint32_t(id)});
    StartStep(index);
  }

  void RemoveRunning(Instance& instance, Sequence& s) {
    if (s.running_index == kNone) return;
    int last = instance.running.back();
    instance.running[s.running_index] = last;
    sequences_[last].running_index = s.running_index;
    instance.running.pop_back();
    instance.running_context -= s.context;
    s.running_index = kNone;
  }

  void Finish(int id) {
    Sequence& s = sequences_[id];
    Instance& decode = instances_[s.decode];
    RemoveRunning(decode, s);
    decode.reserved_tokens -= s.reserved_tokens;
    double e2e = now_ - s.arrival_s;
    double ttft = s.first_token_s < 0 ? e2e : s.first_token_s - s.arrival_s;
    double tpot = s.request.output_tokens > 1
                      ? (now_ - s.first_token_s) / static_cast<double>(s.request.output_tokens - 1)
                      : 0;
    result_.e2e.Add(e2e);
    if (s.request.output_tokens > 1) result_.tpot.Add(tpot);
    ++result_.completed;
    if (bench::MeetsSlo(config_.slo, ttft, tpot, e2e)) ++result_.slo_met;
    result_.makespan_s = std::max(result_.makespan_s, now_);
    int decode_index = s.decode;
    Release(id);
    // Room freed: let a waiting sequence in.
    Instance& instance = instances_[decode_index];
    while (!instance.join_queue.empty() &&
           static_cast<int>(instance.running.size()) < instance.group->max_batch_sequences) {
      int next = instance.join_queue.front();
      instance.join_queue.pop_front();
      if (sequences_[next].alive) Join(decode_index, next);
    }
  }

  void Release(int id) {
    sequences_[id].alive = false;
    free_.push_back(id);
  }

  void OnFailure(int node) {
    std::vector<int> affected;
    for (size_t i = 0; i < instances_.size(); ++i) {
      Instance& instance = instances_[i];
      if (instance.node != node || !instance.alive) continue;
      instance.alive = false;
      instance.prefill_queue.clear();
      instance.queued_prefill_tokens = 0;
    }
    for (size_t id = 0; id < sequences_.size(); ++id) {
      Sequence& s = sequences_[id];
      if (!s.alive) continue;
      bool decode_dead = s.decode != kNone && !instances_[s.decode].alive;
      bool prefill_dead = s.prefill != kNone && !instances_[s.prefill].alive && s.first_token_s < 0;
      if (decode_dead || prefill_dead) affected.push_back(static_cast<int>(id));
    }
    for (int id : affected) {
      Sequence& s = sequences_[id];
      Instance& decode = instances_[s.decode];
      RemoveRunning(decode, s);
      decode.reserved_tokens -= s.reserved_tokens;
      if (s.running_index == kNone && s.first_token_s >= 0) {
        // Tokens already generated: the step counter tells how many.
        s.generated = std::max<int64_t>(1, s.context - s.prompt_tokens);
      }
      // Resubmit prompt + generated tokens elsewhere; the client keeps its stream.
      s.prompt_tokens += std::max<int64_t>(0, s.generated);
      s.remaining = std::max<int64_t>(1, s.request.output_tokens - s.generated);
      s.transferring = false;
      s.decode = s.prefill = kNone;
      ++s.generation;
      ++s.migrations;
      ++result_.migrated;
      RouteExisting(id);
    }
  }

  // Routes a sequence that is already counted (a migration).
  void RouteExisting(int id) {
    uint64_t requests = result_.requests;
    Route(id);
    result_.requests = requests;
  }

  void OnSample() {
    TimelinePoint point;
    point.time_s = now_;
    point.arrivals_per_second = arrivals_in_window_ / config_.timeline_interval_s;
    arrivals_in_window_ = 0;
    for (const Instance& instance : instances_) {
      if (!instance.alive) continue;
      ++point.instances_alive;
      point.running_sequences += static_cast<int64_t>(instance.running.size());
      point.queued_prefill_tokens += instance.queued_prefill_tokens;
    }
    result_.timeline.push_back(point);
    // Keep sampling while anything can still happen.
    if (events_.size() > 0) Push(now_ + config_.timeline_interval_s, EventType::kSample, 0, 0);
  }

  const SimConfig& config_;
  bench::WorkloadGenerator generator_;
  std::mt19937_64 rng_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  uint64_t next_order_ = 0;
  double now_ = 0;
  bench::RequestSpec next_request_;
  std::vector<Instance> instances_;
  std::vector<Sequence> sequences_;
  std::vector<int> free_;
  std::vector<router::WorkerState> states_;
  std::vector<double> nic_free_;
  uint64_t arrivals_in_window_ = 0;
  SimResult result_;
};

}  // namespace

absl::StatusOr<SimResult> Simulate(const SimConfig& config) {
  absl::Status status = ValidateSimConfig(config);
  if (!status.ok()) return status;
  Simulation simulation(config);
  return simulation.Run();
}

absl::StatusOr<double> FindGoodput(const SimConfig& config, const GoodputSearch& search) {
  if (!(search.low > 0) || !(search.high > search.low) || search.iterations < 1) {
    return absl::InvalidArgumentError("goodput search: need 0 < low < high and iterations >= 1");
  }
  auto attained = [&](double rate) -> absl::StatusOr<bool> {
    SimConfig c = config;
    c.workload.arrivals.rate = rate;
    absl::StatusOr<SimResult> result = Simulate(c);
    if (!result.ok()) return result.status();
    return result->SloAttainment() >= search.attainment;
  };
  absl::StatusOr<bool> at_low = attained(search.low);
  if (!at_low.ok()) return at_low.status();
  if (!*at_low) return 0.0;
  double low = search.low, high = search.high;
  for (int i = 0; i < search.iterations; ++i) {
    double mid = std::sqrt(low * high);  // rates span decades: bisect in log space
    absl::StatusOr<bool> ok = attained(mid);
    if (!ok.ok()) return ok.status();
    (*ok ? low : high) = mid;
  }
  return low;
}

std::string ResultToJson(const SimResult& r, bool include_wall_time) {
  nlohmann::json out;
  auto digest = [](const bench::LatencyDigest& d) {
    return nlohmann::json{{"count", d.count()},
                          {"mean_ms", d.mean() * 1e3},
                          {"p50_ms", d.Percentile(50) * 1e3},
                          {"p90_ms", d.Percentile(90) * 1e3},
                          {"p99_ms", d.Percentile(99) * 1e3},
                          {"max_ms", d.max() * 1e3}};
  };
  out["requests"] = r.requests;
  out["completed"] = r.completed;
  out["rejected"] = r.rejected;
  out["failed"] = r.failed;
  out["migrated"] = r.migrated;
  out["disaggregated"] = r.disaggregated;
  out["local_prefill"] = r.local_prefill;
  out["slo_attainment"] = r.SloAttainment();
  out["makespan_s"] = r.makespan_s;
  out["gpu_hours"] = r.gpu_hours;
  out["transfer_gib"] = r.transfer_bytes / (1 << 30);
  out["ttft"] = digest(r.ttft);
  out["itl"] = digest(r.itl);
  out["tpot"] = digest(r.tpot);
  out["e2e"] = digest(r.e2e);
  out["kv_transfer"] = digest(r.transfer);
  for (const auto& [name, usage] : r.roles) {
    out["roles"][name] = {
        {"instances", usage.instances},
        {"gpus", usage.gpus},
        {"utilization", r.makespan_s > 0 && usage.instances > 0
                            ? usage.busy_seconds / (usage.instances * r.makespan_s)
                            : 0}};
  }
  out["events"] = r.events;
  if (include_wall_time) {
    out["wall_seconds"] = r.wall_seconds;
    out["requests_per_wall_second"] = r.wall_seconds > 0 ? r.requests / r.wall_seconds : 0;
  }
  return out.dump(2);
}

}  // namespace tandem::sim
