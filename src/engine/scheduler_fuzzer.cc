// Fuzzes the batching policy and the sampler with arbitrary inputs and checks their invariants:
// the plan never exceeds the token budget or the free blocks it was given, schedules a sequence
// at most once, covers only tokens that exist; sampling never crashes and returns a token in
// range or a clear error.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <set>
#include <vector>

#include "engine/batch_scheduler.h"
#include "engine/sampling.h"

namespace {

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  uint32_t Next(uint32_t bound) {
    uint32_t value = 0;
    for (int i = 0; i < 4 && position_ < size_; ++i) value = value << 8 | data_[position_++];
    return bound == 0 ? 0 : value % bound;
  }
  bool done() const { return position_ >= size_; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
};

void Check(bool condition) {
  if (!condition) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tandem::engine;
  Reader in(data, size);
  SchedulerConfig config{.max_batch_tokens = 1 + in.Next(600),
                         .max_running = 1 + in.Next(40),
                         .block_size = 1 + static_cast<int>(in.Next(32)),
                         .chunked_prefill = in.Next(2) == 0};
  std::vector<SchedSequence> running, waiting;
  const int count = static_cast<int>(in.Next(24));
  for (int i = 0; i < count; ++i) {
    SchedSequence s{.id = static_cast<uint64_t>(i + 1), .arrival = in.Next(50)};
    s.tokens = 1 + in.Next(300);
    if (in.Next(2) == 0) {
      s.computed = in.Next(static_cast<uint32_t>(s.tokens));  // < tokens
      s.blocks_held = BlocksFor(s.computed, config.block_size) + in.Next(2);
      running.push_back(s);
    } else {
      s.computed = in.Next(static_cast<uint32_t>(s.tokens));
      s.blocks_held = BlocksFor(s.computed, config.block_size);
      waiting.push_back(s);
    }
  }
  const int64_t available = in.Next(200);
  StepPlan plan =
      PlanStep(config, {.running = running, .waiting = waiting, .available_blocks = available});
  std::set<uint64_t> seen, preempted(plan.preempted.begin(), plan.preempted.end());
  int64_t tokens = 0, freed = 0, allocated = 0;
  for (const SchedSequence& s : running) {
    if (preempted.count(s.id)) freed += s.blocks_held;
  }
  auto find = [&](uint64_t id) -> const SchedSequence* {
    for (const auto* list : {&running, &waiting}) {
      for (const SchedSequence& s : *list) {
        if (s.id == id) return &s;
      }
    }
    return nullptr;
  };
  for (const ScheduledWork& w : plan.work) {
    Check(seen.insert(w.id).second);
    Check(!preempted.count(w.id));
    const SchedSequence* s = find(w.id);
    Check(s != nullptr);
    Check(w.start == s->computed && w.count >= 1 && w.start + w.count <= s->tokens);
    Check(w.blocks_after * config.block_size >= w.start + w.count);
    Check(w.samples == (w.start + w.count == s->tokens));
    allocated += w.blocks_after - s->blocks_held;
    tokens += w.count;
  }
  Check(tokens == plan.tokens);
  Check(allocated == plan.blocks_allocated);
  Check(allocated <= available + freed);
  if (config.chunked_prefill) Check(tokens <= config.max_batch_tokens);

  // Sampling with arbitrary parameters and logits.
  SamplingParams params{.temperature = static_cast<float>(in.Next(300)) / 100.0f,
                        .top_k = static_cast<int32_t>(in.Next(10)),
                        .top_p = static_cast<float>(in.Next(101)) / 100.0f,
                        .min_p = static_cast<float>(in.Next(101)) / 100.0f,
                        .repetition_penalty = static_cast<float>(in.Next(300)) / 100.0f,
                        .presence_penalty = static_cast<float>(in.Next(500)) / 100.0f - 2.5f,
                        .frequency_penalty = static_cast<float>(in.Next(500)) / 100.0f - 2.5f,
                        .seed = in.Next(1000),
                        .logprobs = in.Next(2) == 0,
                        .top_logprobs = static_cast<int32_t>(in.Next(25))};
  if (!ValidateSamplingParams(params).ok()) return 0;
  std::vector<float> logits(1 + in.Next(64));
  for (float& logit : logits) {
    const uint32_t raw = in.Next(1u << 16);
    logit = raw == 7 ? NAN : (static_cast<float>(raw) - 32768.0f) / 1000.0f;
  }
  std::vector<int32_t> context = {0, 1, static_cast<int32_t>(in.Next(100))};
  Sampler sampler(params, context);
  for (int step = 0; step < 3; ++step) {
    auto sampled = sampler.Sample(logits);
    if (!sampled.ok()) break;
    Check(sampled->token >= 0 && sampled->token < static_cast<int32_t>(logits.size()));
  }
  return 0;
}
