// CapacityIndex: free resources per node and, per topology domain, free GPUs and the number of
// pods of each GPU size (1..max GPUs per node) that fit by GPUs alone. Binding a pod updates the
// node and its ancestors only (depth × max-GPUs counters), so finding room never scans the whole
// cluster: FindNode descends from a domain through children that still have a slot.
//
//   CapacityIndex index(cluster);
//   int node = index.FindNode(domain, pod, FitPolicy::kBestFit);   // -1 when nothing fits
//   if (node >= 0) index.Consume(node, pod);
//   ...
//   index.Release(node, pod);
//
// Thread-safety: not thread-safe; one placer owns it at a time.
#pragma once

#include <cstdint>
#include <limits>
#include <vector>

#include "sched/cluster.h"

namespace tandem::sched {

enum class FitPolicy {
  kBestFit,  // fullest domain and node that fit: keeps big holes whole (the default)
  kSpread,   // emptiest first, as kube-scheduler's LeastAllocated scoring does (baseline)
};

class CapacityIndex {
 public:
  // CPU or memory left unspecified on a node is not tracked (unlimited).
  static constexpr int64_t kUnlimited = std::numeric_limits<int64_t>::max() / 4;

  explicit CapacityIndex(const Cluster& cluster);

  const Cluster& cluster() const { return *cluster_; }
  const Resources& NodeFree(int node) const { return free_[node]; }
  bool Fits(int node, const Resources& pod) const;
  void Consume(int node, const Resources& pod) { Apply(node, pod, -1); }
  void Release(int node, const Resources& pod) { Apply(node, pod, +1); }

  int64_t FreeGpus(int domain) const { return domain_free_gpus_[domain]; }
  // Pods of `gpus` GPUs that fit in `domain` counting GPUs only; huge for CPU-only pods.
  int64_t Slots(int domain, int64_t gpus) const {
    if (gpus <= 0) return kUnlimited;
    if (gpus > max_gpus_) return 0;
    return slots_[static_cast<size_t>(domain) * max_gpus_ + (gpus - 1)];
  }

  // A node inside `domain` where `pod` fits, chosen by `policy` level by level (ties: lowest id),
  // skipping excluded domains; -1 when none.
  int FindNode(int domain, const Resources& pod, FitPolicy policy) const;

  // Exclusions (spread relations): domains marked here are skipped by FindNode and by candidate
  // enumeration. Counted, so nested exclusions of the same domain compose.
  void Exclude(int domain, int delta);
  bool Excluded(int domain) const;
  bool AnyExcluded() const { return excluded_total_ > 0; }

  // Free GPUs in domains of `level` that are partly used (neither empty nor full), and free GPUs
  // overall: fragmentation = the first over the second.
  std::pair<int64_t, int64_t> FragmentedGpus(int level) const;

 private:
  int64_t Contribution(int node) const;
  void Apply(int node, const Resources& pod, int sign);
  int FindNodeIn(int domain, const Resources& pod, FitPolicy policy) const;

  const Cluster* cluster_;
  int64_t max_gpus_ = 1;
  std::vector<Resources> free_;
  std::vector<int64_t> domain_free_gpus_;
  std::vector<int64_t> slots_;
  std::vector<int32_t> node_domain_;
  std::vector<int32_t> excluded_;
  int64_t excluded_total_ = 0;
};

}  // namespace tandem::sched
