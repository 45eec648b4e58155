#include "engine/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tandem::engine {
namespace {

inline void Pause() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// How long an idle worker spins before it sleeps: longer than the serial work between two
// matrix products of a decode step (norms, RoPE, KV writes, a short attention; tens of
// microseconds), so that a worker is awake for every product of the step instead of paying a
// wake-up (tens of microseconds, more on a busy machine) for each. Then spins before a waiting
// caller starts yielding its time slice to whatever else runs on the machine.
constexpr auto kWorkerSpinTime = std::chrono::microseconds(300);
constexpr int kCallerSpins = 4000;

uint32_t GenerationOf(uint64_t job) { return static_cast<uint32_t>(job >> 32); }

}  // namespace

ThreadPool::ThreadPool(int threads) {
  if (threads <= 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads_ = threads;
  workers_.reserve(threads - 1);
  for (int i = 0; i + 1 < threads; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (std::thread& worker : workers_) worker.join();
}

void ThreadPool::RunChunks(uint32_t generation) {
  uint64_t job = job_.load(std::memory_order_acquire);
  while (GenerationOf(job) == generation) {
    const int64_t begin = static_cast<int64_t>(job & 0xffffffffu);
    const JobSlot& slot = slots_[generation & 1];
    const int64_t count = slot.count.load(std::memory_order_relaxed);
    const int64_t grain = slot.chunk.load(std::memory_order_relaxed);
    const auto* body = slot.body.load(std::memory_order_relaxed);
    if (begin >= count) return;
    // Guided chunks: a share of what is left, never below the grain. Large chunks first keep
    // the claims few; small ones last mean a thread the OS deschedules mid-chunk (the machine
    // is shared) holds little of the remaining work while the others finish the rest.
    const int64_t share = (count - begin) / (2 * threads_);
    const int64_t chunk = std::max(grain, (share + grain - 1) / grain * grain);
    const int64_t end = std::min(count, begin + chunk);
    if (job_.compare_exchange_weak(job, (job & ~uint64_t{0xffffffffu}) | static_cast<uint64_t>(end),
                                   std::memory_order_acq_rel, std::memory_order_acquire)) {
      // The claim succeeded, so the job is still running and count/chunk/body are its own.
      (*body)(begin, end);
      done_.fetch_add(end - begin, std::memory_order_acq_rel);
      job = job_.load(std::memory_order_acquire);
    }
  }
}

void ThreadPool::WorkerLoop() {
  uint32_t seen = 0;
  while (true) {
    uint64_t job = job_.load(std::memory_order_acquire);
    const auto spin_until = std::chrono::steady_clock::now() + kWorkerSpinTime;
    for (int spins = 0; GenerationOf(job) == seen; ++spins) {
      // The clock is read every 64 pauses: cheap next to them, fine enough for the deadline.
      if (spins % 64 == 63 && std::chrono::steady_clock::now() >= spin_until) break;
      Pause();
      job = job_.load(std::memory_order_acquire);
    }
    if (GenerationOf(job) == seen) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_.fetch_add(1, std::memory_order_seq_cst);
      wake_.wait(lock, [&] {
        return stop_ || GenerationOf(job_.load(std::memory_order_acquire)) != seen;
      });
      sleeping_.fetch_sub(1, std::memory_order_seq_cst);
      if (stop_) return;
      job = job_.load(std::memory_order_acquire);
    }
    seen = GenerationOf(job);
    RunChunks(seen);
  }
}

void ThreadPool::ParallelFor(int64_t count, int64_t grain,
                             const std::function<void(int64_t, int64_t)>& body) {
  if (count <= 0) return;
  grain = std::max<int64_t>(1, grain);
  if (workers_.empty() || count <= grain) {
    body(0, count);
    return;
  }
  // Generation 0 means "no job yet" to a fresh worker; on wrap-around the next is 2, so that
  // consecutive jobs always alternate between the two slots.
  if (++generation_ == 0) generation_ = 2;
  JobSlot& slot = slots_[generation_ & 1];
  slot.count.store(count, std::memory_order_relaxed);
  slot.chunk.store(grain, std::memory_order_relaxed);
  slot.body.store(&body, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  {
    // Publishing under the mutex orders it against a worker that is about to sleep.
    std::lock_guard<std::mutex> lock(mutex_);
    job_.store(static_cast<uint64_t>(generation_) << 32, std::memory_order_release);
  }
  if (sleeping_.load(std::memory_order_seq_cst) > 0) wake_.notify_all();
  RunChunks(generation_);
  for (int spins = 0; done_.load(std::memory_order_acquire) < count; ++spins) {
    if (spins < kCallerSpins) {
      Pause();
    } else {
      std::this_thread::yield();
    }
  }
}

}  // namespace tandem::engine
