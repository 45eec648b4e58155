#include "sched/capacity_index.h"

#include <algorithm>

namespace tandem::sched {

CapacityIndex::CapacityIndex(const Cluster& cluster) : cluster_(&cluster) {
  max_gpus_ = std::max<int64_t>(1, cluster.max_node_gpus());
  const int num_nodes = cluster.num_nodes();
  free_.resize(num_nodes);
  node_domain_.resize(num_nodes);
  domain_free_gpus_.assign(cluster.num_domains(), 0);
  slots_.assign(static_cast<size_t>(cluster.num_domains()) * max_gpus_, 0);
  excluded_.assign(cluster.num_domains(), 0);
  for (int n = 0; n < num_nodes; ++n) {
    free_[n] = cluster.node(n).capacity;
    if (free_[n].cpu_millis == 0) free_[n].cpu_millis = kUnlimited;
    if (free_[n].memory_bytes == 0) free_[n].memory_bytes = kUnlimited;
    node_domain_[n] = cluster.NodeDomain(n, cluster.node_level());
    int64_t contribution = Contribution(n);
    for (int d = node_domain_[n]; d >= 0; d = cluster.domain(d).parent) {
      domain_free_gpus_[d] += contribution;
      int64_t* slots = &slots_[static_cast<size_t>(d) * max_gpus_];
      for (int64_t g = 1; g <= max_gpus_; ++g) slots[g - 1] += contribution / g;
    }
  }
}

int64_t CapacityIndex::Contribution(int node) const {
  if (cluster_->node(node).unschedulable) return 0;
  return std::max<int64_t>(0, free_[node].gpus);
}

bool CapacityIndex::Fits(int node, const Resources& pod) const {
  const Resources& free = free_[node];
  return !cluster_->node(node).unschedulable && free.gpus >= pod.gpus &&
         free.cpu_millis >= pod.cpu_millis && free.memory_bytes >= pod.memory_bytes;
}

void CapacityIndex::Apply(int node, const Resources& pod, int sign) {
  int64_t before = Contribution(node);
  free_[node].gpus += sign * pod.gpus;
  free_[node].cpu_millis += sign * pod.cpu_millis;
  free_[node].memory_bytes += sign * pod.memory_bytes;
  int64_t after = Contribution(node);
  if (before == after) return;
  for (int d = node_domain_[node]; d >= 0; d = cluster_->domain(d).parent) {
    domain_free_gpus_[d] += after - before;
    int64_t* slots = &slots_[static_cast<size_t>(d) * max_gpus_];
    for (int64_t g = 1; g <= max_gpus_; ++g) slots[g - 1] += after / g - before / g;
  }
}

void CapacityIndex::Exclude(int domain, int delta) {
  excluded_[domain] += delta;
  excluded_total_ += delta;
}

bool CapacityIndex::Excluded(int domain) const {
  if (excluded_total_ == 0) return false;
  for (int d = domain; d >= 0; d = cluster_->domain(d).parent) {
    if (excluded_[d] > 0) return true;
  }
  return false;
}

int CapacityIndex::FindNode(int domain, const Resources& pod, FitPolicy policy) const {
  if (Excluded(domain)) return -1;
  return FindNodeIn(domain, pod, policy);
}

int CapacityIndex::FindNodeIn(int domain, const Resources& pod, FitPolicy policy) const {
  const Domain& d = cluster_->domain(domain);
  if (d.children.empty()) {
    // A node domain: the node itself.
    return Fits(d.node_begin, pod) ? d.node_begin : -1;
  }
  // Visit eligible children in (free GPUs, id) order, ascending for best fit and descending for
  // spread, by repeated selection: no allocation, and usually the first pick succeeds.
  const bool best_fit = policy == FitPolicy::kBestFit;
  int64_t last_free = 0;
  int last_id = -1;
  bool have_last = false;
  while (true) {
    int pick = -1;
    int64_t pick_free = 0;
    for (int32_t child : d.children) {
      if (Slots(child, pod.gpus) < 1) continue;
      if (excluded_total_ > 0 && excluded_[child] > 0) continue;
      int64_t free = domain_free_gpus_[child];
      if (have_last) {
        bool after = best_fit ? (free > last_free || (free == last_free && child > last_id))
                              : (free < last_free || (free == last_free && child > last_id));
        if (!after) continue;
      }
      bool better = pick < 0 || (best_fit ? free < pick_free : free > pick_free) ||
                    (free == pick_free && child < pick);
      if (better) {
        pick = child;
        pick_free = free;
      }
    }
    if (pick < 0) return -1;
    int node = FindNodeIn(pick, pod, policy);
    if (node >= 0) return node;
    have_last = true;
    last_free = pick_free;
    last_id = pick;
  }
}

std::pair<int64_t, int64_t> CapacityIndex::FragmentedGpus(int level) const {
  auto [first, last] = cluster_->LevelRange(level);
  int64_t fragmented = 0, total = 0;
  for (int d = first; d <= last; ++d) {
    const Domain& domain = cluster_->domain(d);
    int64_t capacity = 0;
    for (int n = domain.node_begin; n < domain.node_end; ++n) {
      if (!cluster_->node(n).unschedulable) capacity += cluster_->node(n).capacity.gpus;
    }
    int64_t free = domain_free_gpus_[d];
    total += free;
    if (free > 0 && free < capacity) fragmented += free;
  }
  return {fragmented, total};
}

}  // namespace tandem::sched
