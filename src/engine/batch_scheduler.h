// The continuous-batching policy: given the running and waiting sequences, the free KV blocks
// and a per-step token budget, decide what the next forward step computes. Pure: no threads, no
// clock, no pool access; the engine applies the plan and the simulator calls the same function.
//
// Policy, in order:
//   1. Decodes of running sequences, first come first served (FCFS) by arrival. A decode that
//      needs a new block and finds none preempts the latest-arrived running sequence not yet
//      scheduled this step (preemption by recompute: its blocks are freed and it returns to the
//      waiting queue at its original arrival position); if none is left it is preempted itself.
//   2. Prefill chunks of running sequences (FCFS), each as large as the remaining budget allows
//      (chunked prefill), preempting later arrivals for blocks the same way.
//   3. Admission of waiting sequences strictly in arrival order while budget, the running-set
//      limit and blocks allow: a sequence is admitted only when the pool can hold its whole
//      prompt plus one generated token, and nobody overtakes the head of the queue (fairness).
//
//   SchedulerConfig config{.max_batch_tokens = 512, .block_size = 16};
//   StepPlan plan = PlanStep(config, {.running = running, .waiting = waiting,
//                                     .available_blocks = pool.AvailableBlocks()});
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace tandem::engine {

struct SchedulerConfig {
  int64_t max_batch_tokens = 512;  // tokens computed per step (prefill chunks + decodes)
  int64_t max_running = 256;       // sequences in the running set
  int block_size = 16;
  // Off: a prompt is prefilled in one step (it may exceed the budget when it runs alone).
  bool chunked_prefill = true;
};

struct SchedSequence {
  uint64_t id = 0;
  uint64_t arrival = 0;     // FCFS key, smaller first
  int64_t tokens = 0;       // prompt + generated tokens so far
  int64_t computed = 0;     // tokens whose KV is in the cache (cached prefix included)
  int64_t blocks_held = 0;  // KV blocks the sequence references now
};

struct ScheduledWork {
  uint64_t id = 0;
  int64_t start = 0;         // first position computed
  int64_t count = 0;         // tokens computed this step
  int64_t blocks_after = 0;  // blocks the sequence must hold for it (allocate the difference)
  bool samples = false;      // reaches the last token: its logits yield the next token
};

struct StepPlan {
  std::vector<ScheduledWork> work;  // decodes first, then prefill chunks, in plan order
  std::vector<uint64_t> preempted;  // running sequences to free and requeue
  std::vector<uint64_t> admitted;   // waiting sequences that join the running set
  int64_t tokens = 0;               // sum of work counts
  int64_t blocks_allocated = 0;     // sum of new blocks the work needs
};

struct SchedulerInput {
  std::span<const SchedSequence> running;
  std::span<const SchedSequence> waiting;
  int64_t available_blocks = 0;
};

StepPlan PlanStep(const SchedulerConfig& config, const SchedulerInput& input);

// Blocks needed to hold `tokens` positions.
inline int64_t BlocksFor(int64_t tokens, int block_size) {
  return (tokens + block_size - 1) / block_size;
}

}  // namespace tandem::engine
