// A fixed pool of worker threads for data-parallel kernels: ParallelFor splits an index range
// into chunks that the workers and the calling thread take from a shared counter, and returns
// when every chunk is done. Sized to the cores by default.
//
//   ThreadPool pool(/*threads=*/0);  // 0 = one thread per core
//   pool.ParallelFor(rows, /*grain=*/16, [&](int64_t begin, int64_t end) { ... });
//
// Thread-safety: ParallelFor may be called from one thread at a time (the engine thread); the
// body runs concurrently on up to num_threads() threads and must only write disjoint data.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace tandem::engine {

class ThreadPool {
 public:
  // `threads` counts the calling thread too; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs body(begin, end) over [0, count) in chunks of whole multiples of `grain` indices
  // (except the last), from a share of the remaining work down to `grain`.
  void ParallelFor(int64_t count, int64_t grain,
                   const std::function<void(int64_t begin, int64_t end)>& body);

 private:
  void WorkerLoop();
  // Takes and runs chunks of job `generation` until none is left; false once the job is over.
  void RunChunks(uint32_t generation);

  std::vector<std::thread> workers_;
  // A job is published as `job_` = generation << 32 | next chunk start; chunks are claimed by
  // compare-and-swap, so a worker that wakes late can never take a chunk of a finished job. The
  // caller waits for `done_` (indices completed), not for the workers to check in, so a worker
  // the OS has descheduled does not hold up the step.
  std::atomic<uint64_t> job_{0};
  // A job's size, grain and body, in the slot of its generation's parity: the caller fills the
  // next job's slot while `job_` still shows the last job (fully claimed), and a worker that
  // reads that state must see the last job's size (nothing left to claim), not the next one's,
  // or its claim would succeed against the old generation and run the next job's body
  // unaccounted.
  struct JobSlot {
    std::atomic<int64_t> count{0};
    std::atomic<int64_t> chunk{1};  // the grain
    std::atomic<const std::function<void(int64_t, int64_t)>*> body{nullptr};
  };
  JobSlot slots_[2];
  int64_t threads_ = 1;
  std::atomic<int64_t> done_{0};
  uint32_t generation_ = 0;  // caller side

  // Idle workers spin briefly (a step's matrix products follow each other within microseconds),
  // then sleep here.
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<int> sleeping_{0};
  bool stop_ = false;  // guarded by mutex_
};

}  // namespace tandem::engine
