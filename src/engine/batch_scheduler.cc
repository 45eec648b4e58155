#include "engine/batch_scheduler.h"

#include <algorithm>

namespace tandem::engine {

StepPlan PlanStep(const SchedulerConfig& config, const SchedulerInput& input) {
  StepPlan plan;
  const int bs = config.block_size;
  int64_t budget = config.max_batch_tokens;
  int64_t available = input.available_blocks;

  std::vector<const SchedSequence*> running;
  running.reserve(input.running.size());
  for (const SchedSequence& s : input.running) running.push_back(&s);
  std::stable_sort(
      running.begin(), running.end(),
      [](const SchedSequence* a, const SchedSequence* b) { return a->arrival < b->arrival; });
  // 0 = not yet considered, 1 = scheduled (or skipped this step), 2 = preempted.
  std::vector<int> state(running.size(), 0);

  // Frees blocks by preempting the latest-arrived unconsidered sequence other than `self`.
  auto preempt_one = [&](size_t self) -> bool {
    for (size_t v = running.size(); v-- > 0;) {
      if (v == self || state[v] != 0) continue;
      state[v] = 2;
      plan.preempted.push_back(running[v]->id);
      available += running[v]->blocks_held;
      return true;
    }
    return false;
  };
  // Schedules `count` tokens of running[i], preempting for blocks; false if it was preempted.
  auto schedule = [&](size_t i, int64_t count) {
    const SchedSequence& s = *running[i];
    int64_t need = std::max<int64_t>(0, BlocksFor(s.computed + count, bs) - s.blocks_held);
    while (need > available) {
      if (!preempt_one(i)) break;
    }
    if (need > available) {
      // Shrink a prefill chunk to the blocks there are; a decode cannot shrink.
      const int64_t fits = (s.blocks_held + available) * bs - s.computed;
      if (count > 1 && fits > 0) {
        count = fits;
        need = std::max<int64_t>(0, BlocksFor(s.computed + count, bs) - s.blocks_held);
      } else {
        state[i] = 2;
        plan.preempted.push_back(s.id);
        available += s.blocks_held;
        return;
      }
    }
    state[i] = 1;
    available -= need;
    budget -= count;
    plan.tokens += count;
    plan.blocks_allocated += need;
    plan.work.push_back({.id = s.id,
                         .start = s.computed,
                         .count = count,
                         .blocks_after = s.blocks_held + need,
                         .samples = s.computed + count == s.tokens});
  };

  // 1. Decodes.
  for (size_t i = 0; i < running.size() && budget > 0; ++i) {
    if (state[i] != 0 || running[i]->tokens - running[i]->computed != 1) continue;
    schedule(i, 1);
  }
  // 2. Prefill chunks of running sequences.
  for (size_t i = 0; i < running.size() && budget > 0; ++i) {
    if (state[i] != 0) continue;
    const int64_t remaining = running[i]->tokens - running[i]->computed;
    if (remaining <= 0) {
      state[i] = 1;
      continue;
    }
    int64_t count = remaining;
    if (config.chunked_prefill) {
      count = std::min(remaining, budget);
    } else if (remaining > budget && plan.tokens > 0) {
      continue;  // waits for a step it can have to itself
    }
    schedule(i, count);
  }

  // 3. Admissions, strictly FCFS.
  std::vector<const SchedSequence*> waiting;
  waiting.reserve(input.waiting.size());
  for (const SchedSequence& s : input.waiting) waiting.push_back(&s);
  std::stable_sort(
      waiting.begin(), waiting.end(),
      [](const SchedSequence* a, const SchedSequence* b) { return a->arrival < b->arrival; });
  int64_t running_count = 0;
  for (int s : state) running_count += s != 2;
  for (const SchedSequence* s : waiting) {
    if (budget <= 0 || running_count >= config.max_running) break;
    // A preempted sequence never comes back in the step that preempted it... (it is not in
    // `waiting` yet), and a request is admitted only if its whole prompt + 1 token fits.
    const int64_t whole = std::max<int64_t>(0, BlocksFor(s->tokens + 1, bs) - s->blocks_held);
    if (whole > available) break;
    const int64_t remaining = s->tokens - s->computed;
    int64_t count = remaining;
    if (config.chunked_prefill) {
      count = std::min(remaining, budget);
    } else if (remaining > budget && plan.tokens > 0) {
      break;
    }
    const int64_t need = std::max<int64_t>(0, BlocksFor(s->computed + count, bs) - s->blocks_held);
    available -= need;
    budget -= count;
    plan.tokens += count;
    plan.blocks_allocated += need;
    ++running_count;
    plan.admitted.push_back(s->id);
    plan.work.push_back({.id = s->id,
                         .start = s->computed,
                         .count = count,
                         .blocks_after = s->blocks_held + need,
                         .samples = s->computed + count == s->tokens});
  }
  return plan;
}

}  // namespace tandem::engine
