// Router core benchmarks.
//
//  1. Routing decision latency: 64 workers (48 decode, 16 prefill; 16 hosts in 4 racks),
//     1,000,000 distinct blocks indexed (4,000 documents of 250 blocks, each cached on one or
//     two workers). Each request is a 2,048-token prompt (128 blocks of 16) sharing a random
//     prefix of a random document. One decision = hash the prompt, query the index and the
//     forecast, score all workers, choose decode and prefill, record the forecast (about 512
//     requests stay in flight). Reported: p50/p99 of the whole decision, timed first, then of
//     its parts (repeated, so warm). Baseline: one lookup per block the index had to examine,
//     in a plain absl::flat_hash_map holding the same 1,000,000 keys.
//  2. KV event ingestion on one core: stored/removed events (1 block each, and 8 blocks each)
//     from 64 workers into an index holding ~1,000,000 blocks. Baseline: the same inserts and
//     erases on a plain absl::flat_hash_set<uint64_t>. Then the live router's whole path per
//     event: decoding the JSON the worker streams (kv_event_wire.h) and applying it.
//
// Usage: router_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "router/block_hash.h"
#include "router/kv_event_wire.h"
#include "router/kv_index.h"
#include "router/kv_router.h"

namespace {

using tandem::router::BlockHash;
using tandem::router::HashPromptBlocks;
using tandem::router::KvEvent;
using tandem::router::KvIndex;
using tandem::router::KvRouter;
using tandem::router::OverlapScores;
using tandem::router::WorkerId;
using tandem::router::WorkerInfo;
using tandem::router::WorkerRole;
using Clock = std::chrono::steady_clock;

constexpr int kBlockSize = 16;
constexpr int kWorkers = 64;
constexpr int kDecodeWorkers = 48;
constexpr int kDocuments = 4000;
constexpr int kDocumentBlocks = 250;  // 4,000 x 250 = 1,000,000 distinct blocks
constexpr int kPromptTokens = 2048;

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Token i of document d, regenerated on demand instead of stored.
int32_t DocumentToken(int d, int i) {
  return static_cast<int32_t>(SplitMix(uint64_t(d) << 32 | uint32_t(i)) % 128000);
}

double Nanos(Clock::duration d) { return std::chrono::duration<double, std::nano>(d).count(); }

struct Percentiles {
  double p50, p99, mean;
};
Percentiles Summarize(std::vector<double> samples) {
  std::sort(samples.begin(), samples.end());
  double sum = 0;
  for (double s : samples) sum += s;
  auto at = [&](double q) {
    return samples[std::min(samples.size() - 1, size_t(q * samples.size()))];
  };
  return {at(0.50), at(0.99), sum / samples.size()};
}

long RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

void Print(const char* name, const Percentiles& p) {
  std::printf("  %-34s p50 %8.2f us   p99 %8.2f us   mean %8.2f us\n", name, p.p50 / 1000,
              p.p99 / 1000, p.mean / 1000);
}

int RoutingLatency(bool quick) {
  std::printf("routing decision latency (%d workers, %d decode)\n", kWorkers, kDecodeWorkers);
  std::mt19937_64 rng(42);
  tandem::router::RoutingConfig config;
  config.block_size = kBlockSize;
  auto router_or =
      KvRouter::Create({.routing = config, .index = {.max_workers = kWorkers}, .seed = 42});
  if (!router_or.ok()) {
    std::fprintf(stderr, "%s\n", router_or.status().ToString().c_str());
    return 1;
  }
  KvRouter& router = **router_or;

  // Load the index through real events: 16 blocks per stored event.
  const long rss_before = RssKb();
  std::vector<uint64_t> next_event(kWorkers, 0);
  std::vector<BlockHash> all_keys;
  all_keys.reserve(size_t(kDocuments) * kDocumentBlocks);
  std::vector<int32_t> tokens(kDocumentBlocks * kBlockSize);
  const auto load_start = Clock::now();
  for (int d = 0; d < kDocuments; ++d) {
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = DocumentToken(d, int(i));
    const std::vector<BlockHash> hashes = HashPromptBlocks(tokens, kBlockSize);
    all_keys.insert(all_keys.end(), hashes.begin(), hashes.end());
    const int copies = 1 + int(rng() % 2);
    for (int c = 0; c < copies; ++c) {
      const WorkerId worker = rng() % kWorkers;
      // Some copies are partly evicted: a worker keeps a leading part of the chain.
      const size_t kept = c == 0 ? hashes.size() : 16 + rng() % (hashes.size() - 16);
      for (size_t first = 0; first < kept; first += 16) {
        KvEvent event{.type = KvEvent::Type::kStored, .epoch = 1, .event_id = ++next_event[worker]};
        event.block_hashes.assign(hashes.begin() + first,
                                  hashes.begin() + std::min(kept, first + 16));
        if (!router.ApplyEvent(worker, event).ok()) return 1;
      }
    }
  }
  const double load_seconds = std::chrono::duration<double>(Clock::now() - load_start).count();
  const long rss_after = RssKb();
  std::printf(
      "  indexed %zu distinct blocks (%zu worker copies), %.1f s to load, index RSS ~%.0f MB\n",
      router.index().DistinctBlocks(),
      [&] {
        size_t total = 0;
        for (int w = 0; w < kWorkers; ++w) total += router.index().BlockCount(w);
        return total;
      }(),
      load_seconds, (rss_after - rss_before) / 1024.0 - all_keys.size() * 8.0 / (1 << 20));

  std::vector<WorkerInfo> workers;
  for (int w = 0; w < kWorkers; ++w) {
    WorkerInfo info;
    info.id = WorkerId(w);
    info.role = w < kDecodeWorkers ? WorkerRole::kDecode : WorkerRole::kPrefill;
    info.location = {.host = w / 4, .rack = w / 16};
    info.capacity_blocks = 100000;
    workers.push_back(info);
  }

  // Requests: a random document's prefix of random length, then fresh tokens.
  const int requests = quick ? 5000 : 50000;
  std::vector<std::vector<int32_t>> prompts(std::min(requests, 5000));
  for (auto& prompt : prompts) {
    const int d = int(rng() % kDocuments);
    const int shared_blocks = int(rng() % (kPromptTokens / kBlockSize + 1));
    prompt.resize(kPromptTokens);
    for (int i = 0; i < kPromptTokens; ++i) {
      prompt[i] = i < shared_blocks * kBlockSize ? DocumentToken(d, i)
                                                 : static_cast<int32_t>(rng() % 128000);
    }
  }

  std::vector<double> hash_ns, overlap_ns, route_ns, baseline_ns;
  hash_ns.reserve(requests);
  overlap_ns.reserve(requests);
  route_ns.reserve(requests);
  baseline_ns.reserve(requests);
  absl::flat_hash_map<uint64_t, uint64_t> plain;
  plain.reserve(all_keys.size());
  for (BlockHash key : all_keys) plain[key] = key;
  std::vector<BlockHash> hashes;
  OverlapScores scores;
  std::deque<uint64_t> in_flight;
  uint64_t sink = 0;
  int disaggregated = 0;
  double overlap_blocks = 0;
  for (int r = 0; r < requests; ++r) {
    const auto& prompt = prompts[r % prompts.size()];
    // The decision first, so it meets the caches as a fresh request would; the part timings
    // after it are diagnostics (and find the same buckets warm).
    auto t2 = Clock::now();
    auto decision = router.Route(uint64_t(r), prompt, 128, workers);
    auto t3 = Clock::now();
    auto t0 = Clock::now();
    HashPromptBlocks(prompt, kBlockSize, &hashes);
    auto t1 = Clock::now();
    router.index().FindOverlap(hashes, &scores);
    auto t1b = Clock::now();
    // Baseline: one plain lookup per block the index had to look at.
    size_t looked = 0;
    for (const auto& [w, n] : scores.blocks) looked = std::max<size_t>(looked, n);
    looked = std::min(hashes.size(), looked + 1);
    auto t4 = Clock::now();
    for (size_t i = 0; i < looked; ++i) {
      auto it = plain.find(hashes[i]);
      sink += it == plain.end() ? 1 : it->second;
    }
    auto t5 = Clock::now();
    if (!decision.ok()) {
      std::fprintf(stderr, "route failed: %s\n", decision.status().ToString().c_str());
      return 1;
    }
    disaggregated += decision->disaggregated();
    overlap_blocks += decision->decode_overlap_blocks;
    hash_ns.push_back(Nanos(t1 - t0));
    overlap_ns.push_back(Nanos(t1b - t1));
    route_ns.push_back(Nanos(t3 - t2));
    baseline_ns.push_back(Nanos(t5 - t4));
    in_flight.push_back(uint64_t(r));
    if (in_flight.size() > 512) {  // ~512 requests running at once
      router.OnFinished(in_flight.front());
      in_flight.pop_front();
    }
  }
  const Percentiles route = Summarize(route_ns);
  const Percentiles baseline = Summarize(baseline_ns);
  std::printf("  %d decisions, %.0f%% disaggregated, mean decode overlap %.1f blocks (sink %llu)\n",
              requests, 100.0 * disaggregated / requests, overlap_blocks / requests,
              static_cast<unsigned long long>(sink % 10));
  Print("hash 2048-token prompt (warm)", Summarize(hash_ns));
  Print("index overlap query (warm)", Summarize(overlap_ns));
  Print("full decision (Route)", route);
  Print("baseline: plain map lookups", baseline);
  std::printf(
      "  RESULT routing_decision p50_us=%.2f p99_us=%.2f target_p50_us=10 "
      "p50_vs_target=%.2f p50_vs_baseline=%.1fx\n",
      route.p50 / 1000, route.p99 / 1000, route.p50 / 10000, route.p50 / baseline.p50);
  return 0;
}

struct IngestResult {
  double events_per_second;
  double blocks_per_second;
};

// Steady-state churn: each worker alternately stores a new chain piece and removes an old one,
// so the index stays near its starting size.
IngestResult Ingest(KvIndex& index, std::vector<uint64_t>& next_event, uint64_t& next_hash,
                    std::deque<std::vector<BlockHash>>& resident, int events, int blocks_each,
                    std::mt19937_64& rng) {
  std::vector<std::pair<WorkerId, KvEvent>> stream;
  stream.reserve(events);
  std::vector<std::deque<std::vector<BlockHash>>> per_worker(kWorkers);
  for (int e = 0; e < events; ++e) {
    const WorkerId worker = rng() % kWorkers;
    KvEvent event{.epoch = 1, .event_id = ++next_event[worker]};
    if (e % 2 == 0 || per_worker[worker].empty()) {
      event.type = KvEvent::Type::kStored;
      for (int b = 0; b < blocks_each; ++b) event.block_hashes.push_back(SplitMix(++next_hash));
      per_worker[worker].push_back(event.block_hashes);
    } else {
      event.type = KvEvent::Type::kRemoved;
      event.block_hashes = std::move(per_worker[worker].front());
      per_worker[worker].pop_front();
    }
    stream.emplace_back(worker, std::move(event));
  }
  const auto start = Clock::now();
  uint64_t applied = 0;
  for (const auto& [worker, event] : stream) {
    auto outcome = index.Apply(worker, event);
    applied += outcome.ok() && *outcome == tandem::router::ApplyOutcome::kApplied;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (applied != stream.size())
    std::fprintf(stderr, "warning: %llu of %zu applied\n", (unsigned long long)applied,
                 stream.size());
  return {events / seconds, double(events) * blocks_each / seconds};
}

// The live path: each event arrives as the JSON a worker streams, is decoded, then applied.
double IngestWire(KvIndex& index, std::vector<uint64_t>& next_event, uint64_t& next_hash,
                  int events, std::mt19937_64& rng) {
  std::vector<std::pair<WorkerId, std::string>> stream;
  stream.reserve(events);
  std::vector<std::deque<BlockHash>> per_worker(kWorkers);
  for (int e = 0; e < events; ++e) {
    const WorkerId worker = rng() % kWorkers;
    KvEvent event{.epoch = 1, .event_id = ++next_event[worker]};
    if (e % 2 == 0 || per_worker[worker].empty()) {
      event.type = KvEvent::Type::kStored;
      event.block_hashes.push_back(SplitMix(++next_hash));
      per_worker[worker].push_back(event.block_hashes[0]);
    } else {
      event.type = KvEvent::Type::kRemoved;
      event.block_hashes.push_back(per_worker[worker].front());
      per_worker[worker].pop_front();
    }
    stream.emplace_back(worker, tandem::router::KvEventToJson(event));
  }
  const auto start = Clock::now();
  uint64_t applied = 0;
  KvEvent event;  // reused, as the router's subscriber does
  for (const auto& [worker, text] : stream) {
    if (!tandem::router::KvEventFromJsonInto(text, &event).ok()) continue;
    auto outcome = index.Apply(worker, event);
    applied += outcome.ok() && *outcome == tandem::router::ApplyOutcome::kApplied;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (applied != stream.size()) {
    std::fprintf(stderr, "warning: %llu of %zu applied\n", (unsigned long long)applied,
                 stream.size());
  }
  return events / seconds;
}

double PlainSetOpsPerSecond(int ops, std::mt19937_64& rng) {
  absl::flat_hash_set<uint64_t> set;
  set.reserve(1 << 20);
  std::deque<uint64_t> resident;
  uint64_t next = 1ULL << 40;
  for (int i = 0; i < 1000000; ++i) {
    set.insert(SplitMix(++next));
    resident.push_back(SplitMix(next));
  }
  std::vector<uint64_t> keys;
  keys.reserve(ops);
  for (int i = 0; i < ops; ++i) keys.push_back(i % 2 == 0 ? SplitMix(++next) : 0);
  const auto start = Clock::now();
  for (int i = 0; i < ops; ++i) {
    if (i % 2 == 0) {
      set.insert(keys[i]);
    } else {
      set.erase(resident.front());
      resident.pop_front();
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return ops / seconds;
}

int IngestionRate(bool quick) {
  std::printf("KV event ingestion (one core, %d workers)\n", kWorkers);
  std::mt19937_64 rng(7);
  KvIndex index({.max_workers = kWorkers});
  std::vector<uint64_t> next_event(kWorkers, 0);
  uint64_t next_hash = 0;
  std::deque<std::vector<BlockHash>> resident;
  // Fill to ~1,000,000 blocks first (8-block stored events).
  for (int e = 0; e < 125000; ++e) {
    const WorkerId worker = rng() % kWorkers;
    KvEvent event{.type = KvEvent::Type::kStored, .epoch = 1, .event_id = ++next_event[worker]};
    for (int b = 0; b < 8; ++b) event.block_hashes.push_back(SplitMix(++next_hash));
    if (!index.Apply(worker, event).ok()) return 1;
  }
  std::printf("  index holds %zu blocks before the stream\n", index.DistinctBlocks());
  const int events = quick ? 500000 : 2000000;
  const IngestResult one = Ingest(index, next_event, next_hash, resident, events, 1, rng);
  const IngestResult eight = Ingest(index, next_event, next_hash, resident, events / 4, 8, rng);
  const double wire = IngestWire(index, next_event, next_hash, events / 4, rng);
  const double plain = PlainSetOpsPerSecond(events, rng);
  std::printf("  1-block events:  %6.2f M events/s (%6.2f M blocks/s)\n",
              one.events_per_second / 1e6, one.blocks_per_second / 1e6);
  std::printf("  8-block events:  %6.2f M events/s (%6.2f M blocks/s)\n",
              eight.events_per_second / 1e6, eight.blocks_per_second / 1e6);
  std::printf("  1-block events as JSON (decode + apply, the live path): %6.2f M events/s\n",
              wire / 1e6);
  std::printf("  baseline: plain flat_hash_set insert/erase %6.2f M ops/s\n", plain / 1e6);
  std::printf(
      "  RESULT kv_ingestion events_per_s=%.0f target=2000000 vs_target=%.2f "
      "vs_plain_set=%.2f blocks_per_s_8=%.0f json_events_per_s=%.0f\n",
      one.events_per_second, one.events_per_second / 2e6, one.events_per_second / plain,
      eight.blocks_per_second, wire);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "router_bench: unknown argument '%s'; usage: router_bench [--quick]\n",
                   argv[i]);
      return 2;
    }
  }
  if (int rc = RoutingLatency(quick); rc != 0) return rc;
  return IngestionRate(quick);
}
