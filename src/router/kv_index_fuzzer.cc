// Fuzzes KvIndex with arbitrary event streams (gaps, duplicates, epoch changes, snapshots,
// removals of unknown blocks, worker churn) and checks its invariants after every step:
// per-worker block counts match the blocks listed, every overlap answer agrees with Holds(),
// and the distinct-block count matches the union of all workers' blocks.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <vector>

#include "router/kv_index.h"

namespace {

using tandem::router::BlockHash;
using tandem::router::KvEvent;
using tandem::router::KvIndex;
using tandem::router::KvSnapshot;
using tandem::router::OverlapScores;
using tandem::router::WorkerId;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool empty() const { return pos_ >= size_; }
  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

void Check(bool condition) {
  if (!condition) std::abort();
}

void CheckInvariants(const KvIndex& index, const std::vector<WorkerId>& workers) {
  std::set<BlockHash> all;
  for (WorkerId worker : workers) {
    const std::vector<BlockHash> blocks = index.BlocksOf(worker);
    Check(static_cast<int64_t>(blocks.size()) == index.BlockCount(worker));
    all.insert(blocks.begin(), blocks.end());
  }
  Check(all.size() == index.DistinctBlocks());
  // Hashes are small numbers; a chain 1..8 is a prompt.
  std::vector<BlockHash> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  OverlapScores scores;
  index.FindOverlap(prompt, &scores);
  for (WorkerId worker : workers) {
    int32_t expected = 0;
    while (expected < 8 && index.Holds(worker, prompt[expected])) ++expected;
    Check(scores.For(worker) == expected);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Reader in(data, size);
  const int max_workers = in.Byte() % 2 == 0 ? 4 : 70;  // inline and arena worker sets
  KvIndex index({.max_workers = max_workers, .max_buffered_events = 4});
  const std::vector<WorkerId> workers = {0, 1, 2, 3, 64, 69};
  while (!in.empty()) {
    const uint8_t op = in.Byte();
    const WorkerId worker = workers[in.Byte() % workers.size()];
    const uint64_t epoch = in.Byte() % 4;
    const uint64_t id = in.Byte() % 16;
    std::vector<BlockHash> hashes;
    for (int n = in.Byte() % 6; n > 0; --n) hashes.push_back(in.Byte() % 12);
    switch (op % 5) {
      case 0:
      case 1:
      case 2: {
        KvEvent event{.type = static_cast<KvEvent::Type>(op % 4),
                      .epoch = epoch,
                      .event_id = id,
                      .block_hashes = hashes};
        auto outcome = index.Apply(worker, event);
        Check(outcome.ok() || op % 4 == 3 ||
              outcome.status().code() == absl::StatusCode::kResourceExhausted);
        break;
      }
      case 3: {
        absl::Status status = index.ApplySnapshot(
            worker, KvSnapshot{.epoch = epoch, .event_id = id, .block_hashes = hashes});
        (void)status;
        break;
      }
      case 4:
        index.RemoveWorker(worker);
        break;
    }
    CheckInvariants(index, workers);
    Check(static_cast<int>(index.WorkerCount()) <= max_workers);
    for (const auto& request : index.PendingResyncs()) Check(index.NeedsResync(request.worker));
  }
  return 0;
}
