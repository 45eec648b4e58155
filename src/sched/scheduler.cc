#include "sched/scheduler.h"

#include <algorithm>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::sched {
namespace {

// kFull: every child and pod. kMin: the minimums. kOne: the minimums and at least one pod, for a
// gang grown from nothing (a minimum of 0 binds nothing, and so pins no domain).
enum class Target { kFull, kMin, kOne };

struct Demand {
  int64_t gpus = 0;
  std::vector<std::pair<int64_t, int64_t>> shapes;  // (GPUs per pod, pods); exact demands only
};

int Lca(const Cluster& cluster, int a, int b) {
  if (a < 0) return b;
  if (b < 0) return a;
  while (a != b) {
    int level_a = cluster.domain(a).level, level_b = cluster.domain(b).level;
    if (level_a >= level_b) a = cluster.domain(a).parent;
    if (level_b >= level_a && a != b) b = cluster.domain(b).parent;
  }
  return a;
}

std::string LevelName(const Cluster& cluster, int level) {
  return level < 0 ? "cluster" : cluster.levels()[level].name;
}

std::string DomainName(const Cluster& cluster, int domain) {
  return domain <= 0 ? std::string("cluster") : cluster.domain(domain).path;
}

// One placement attempt over a request. Binds into the index as it goes, with an undo log for
// checkpoints; the owner commits by dropping the Placer or undoes everything with RollbackAll.
class Placer {
 public:
  Placer(CapacityIndex& index, const PlacementRequest& request, const PlaceOptions& options,
         const std::map<std::string, int>& running_pods)
      : index_(index), cluster_(index.cluster()), request_(request), options_(options) {
    const int num_gangs = static_cast<int>(request.gangs.size());
    pod_begin_.assign(num_gangs, 0);
    pod_end_.assign(num_gangs, 0);
    subtree_begin_.assign(num_gangs, 0);
    subtree_end_.assign(num_gangs, 0);
    bound_.assign(num_gangs, 0);
    chosen_.assign(num_gangs, Cluster::kRoot);
    scope_.assign(num_gangs, Cluster::kRoot);
    full_.resize(num_gangs);
    min_.resize(num_gangs);
    fixed_lca_.assign(num_gangs, -1);
    pending_.resize(num_gangs);
    // Pods flattened in depth-first order, so every subtree owns a contiguous range.
    Flatten(0);
    for (int g = 0; g < num_gangs; ++g) {
      const Gang& gang = request.gangs[g];
      if (!gang.leaf) continue;
      for (int p = pod_begin_[g]; p < pod_end_[g]; ++p) {
        auto it = running_pods.find(gang.pod_names[p - pod_begin_[g]]);
        if (it == running_pods.end()) continue;
        pod_node_[p] = it->second;  // already consumed in the index: running, never moved
        fixed_[p] = true;
        ++bound_[g];
        any_fixed_ = true;
      }
    }
    for (int i = static_cast<int>(dfs_.size()) - 1; i >= 0; --i) ComputeDemand(dfs_[i]);
  }

  // Phase 1 (whole tree at full size, else at minimums) and phase 2 (growth). True when every
  // minimum is met; the bindings stay in the index either way until RollbackAll.
  bool Run() {
    if (PlaceGang(0, Cluster::kRoot, Target::kFull)) return true;
    Rollback(0);
    for (auto& reason : pending_) reason.reset();  // the full-size pass's reasons are moot now
    if (!PlaceGang(0, Cluster::kRoot, Target::kMin)) {
      Explain(0, Cluster::kRoot, 0);
      return false;
    }
    if (BoundPods(0) == 0) {
      // Every minimum is 0: growth still has to pick the root's domain first.
      size_t checkpoint = undo_.size();
      if (!PlaceGang(0, Cluster::kRoot, Target::kOne)) {
        Rollback(checkpoint);
        return true;
      }
    }
    Grow(0);
    return true;
  }

  void RollbackAll() { Rollback(0); }

  PlacementResult Result(bool scheduled) const {
    PlacementResult result;
    result.scheduled = scheduled;
    const int num_gangs = static_cast<int>(request_.gangs.size());
    int preferences = 0, met = 0;
    for (int g = 0; g < num_gangs; ++g) {
      const Gang& gang = request_.gangs[g];
      GangOutcome outcome;
      outcome.gang = g;
      outcome.placed = IsPlaced(g);
      for (int p = subtree_begin_[g]; p < subtree_end_[g]; ++p) {
        ++outcome.pods_total;
        if (pod_node_[p] >= 0) {
          ++outcome.pods_bound;
          outcome.domain = Lca(cluster_, outcome.domain, NodeDomain(pod_node_[p]));
        }
      }
      if (gang.preferred.index >= 0 && outcome.pods_bound > 0) {
        outcome.has_preference = true;
        outcome.preference_met = cluster_.domain(outcome.domain).level >= gang.preferred.index;
        ++preferences;
        met += outcome.preference_met;
      }
      for (const Relation& relation : gang.relations) {
        int target = relation.target_gang;
        if (BoundPods(target) == 0 || outcome.pods_bound == 0) continue;
        bool ok = RelationHolds(g, relation);
        // Where the two meet: the link level KV crosses between them, and its bandwidth.
        int meet = outcome.domain;
        for (int p = subtree_begin_[target]; p < subtree_end_[target]; ++p) {
          if (pod_node_[p] >= 0) meet = Lca(cluster_, meet, NodeDomain(pod_node_[p]));
        }
        int meet_level = cluster_.domain(meet).level;
        std::string meeting =
            meet_level < 0 ? std::string(", they meet only at the cluster level")
                           : absl::StrCat(", they meet at ", cluster_.levels()[meet_level].name);
        if (meet_level >= 0 && cluster_.levels()[meet_level].bandwidth_gbps > 0) {
          absl::StrAppend(&meeting, " (", cluster_.levels()[meet_level].bandwidth_gbps, " Gbps)");
        }
        if (!relation.required) {
          ++preferences;
          met += ok;
        }
        outcome.notes.push_back(absl::StrCat(
            relation.kind == RelationKind::kSameDomain ? "same " : "spread from ",
            relation.kind == RelationKind::kSameDomain ? relation.level.name : relation.target,
            relation.kind == RelationKind::kSameDomain ? absl::StrCat(" as ", relation.target)
                                                       : absl::StrCat(" by ", relation.level.name),
            relation.required ? " (required)" : " (preferred)", ok ? ": met" : ": not met",
            relation.kind == RelationKind::kSameDomain ? meeting : ""));
      }
      result.gangs.push_back(std::move(outcome));
      if (pending_[g] && !IsPlaced(g)) {
        PendingReason reason = *pending_[g];
        reason.blocking = gang.parent < 0 || !IsPlaced(gang.parent) || !scheduled;
        result.pending.push_back(std::move(reason));
      }
    }
    result.score = preferences == 0 ? 1.0 : static_cast<double>(met) / preferences;
    for (int g = 0; g < num_gangs; ++g) {
      if (!request_.gangs[g].leaf) continue;
      for (int p = pod_begin_[g]; p < pod_end_[g]; ++p) {
        if (pod_node_[p] < 0) continue;
        result.pods.push_back({g, p - pod_begin_[g], pod_node_[p], fixed_[p]});
        result.new_pods += !fixed_[p];
      }
    }
    return result;
  }

 private:
  void Flatten(int g) {
    dfs_.push_back(g);
    const Gang& gang = request_.gangs[g];
    subtree_begin_[g] = static_cast<int>(pod_node_.size());
    if (gang.leaf) {
      pod_begin_[g] = static_cast<int>(pod_node_.size());
      for (size_t k = 0; k < gang.pod_names.size(); ++k) {
        pod_node_.push_back(-1);
        pod_gang_.push_back(g);
        fixed_.push_back(false);
      }
      pod_end_[g] = static_cast<int>(pod_node_.size());
    }
    for (int child : gang.children) Flatten(child);
    subtree_end_[g] = static_cast<int>(pod_node_.size());
  }

  void ComputeDemand(int g) {
    const Gang& gang = request_.gangs[g];
    for (int p = subtree_begin_[g]; p < subtree_end_[g]; ++p) {
      if (fixed_[p]) fixed_lca_[g] = Lca(cluster_, fixed_lca_[g], NodeDomain(pod_node_[p]));
    }
    if (gang.leaf) {
      int64_t n = static_cast<int64_t>(gang.pod_names.size());
      int64_t per_pod = gang.pod_resources.gpus;
      full_[g] = {n * per_pod, {{per_pod, n}}};
      min_[g] = {gang.min_pods * per_pod, {{per_pod, gang.min_pods}}};
      return;
    }
    Demand full;
    std::map<int64_t, int64_t> shapes;
    std::vector<int64_t> child_min;
    for (int child : gang.children) {
      full.gpus += full_[child].gpus;
      for (auto [gpus, count] : full_[child].shapes) shapes[gpus] += count;
      child_min.push_back(min_[child].gpus);
    }
    full.shapes.assign(shapes.begin(), shapes.end());
    full_[g] = std::move(full);
    // A lower bound only: the cheapest children that could make the minimum.
    std::sort(child_min.begin(), child_min.end());
    Demand min;
    for (int i = 0; i < gang.min_children; ++i) min.gpus += child_min[i];
    min_[g] = std::move(min);
  }

  int NodeDomain(int node) const { return cluster_.NodeDomain(node, cluster_.node_level()); }

  int BoundPods(int g) const {
    if (request_.gangs[g].leaf) return bound_[g];
    int count = 0;
    for (int child : request_.gangs[g].children) count += BoundPods(child);
    return count;
  }

  bool IsPlaced(int g) const {
    const Gang& gang = request_.gangs[g];
    if (gang.leaf) return bound_[g] >= gang.min_pods;
    int placed = 0;
    for (int child : gang.children) placed += IsPlaced(child);
    return placed >= gang.min_children;
  }

  bool IsComplete(int g) const {
    const Gang& gang = request_.gangs[g];
    if (gang.leaf) return bound_[g] == static_cast<int>(gang.pod_names.size());
    for (int child : gang.children) {
      if (!IsComplete(child)) return false;
    }
    return true;
  }

  int FirstBoundNode(int g) const {
    for (int p = subtree_begin_[g]; p < subtree_end_[g]; ++p) {
      if (pod_node_[p] >= 0) return pod_node_[p];
    }
    return -1;
  }

  bool RelationHolds(int g, const Relation& relation) const {
    int level = relation.level.index;
    std::set<int> mine, theirs;
    for (int p = subtree_begin_[g]; p < subtree_end_[g]; ++p) {
      if (pod_node_[p] >= 0) mine.insert(cluster_.NodeDomain(pod_node_[p], level));
    }
    int t = relation.target_gang;
    for (int p = subtree_begin_[t]; p < subtree_end_[t]; ++p) {
      if (pod_node_[p] >= 0) theirs.insert(cluster_.NodeDomain(pod_node_[p], level));
    }
    if (relation.kind == RelationKind::kSameDomain) {
      return mine.size() == 1 && theirs.size() == 1 && *mine.begin() == *theirs.begin();
    }
    for (int d : mine) {
      if (theirs.count(d)) return false;
    }
    return true;
  }

  void Bind(int p, int node) {
    index_.Consume(node, request_.gangs[pod_gang_[p]].pod_resources);
    pod_node_[p] = node;
    ++bound_[pod_gang_[p]];
    undo_.push_back(p);
  }

  void Rollback(size_t checkpoint) {
    while (undo_.size() > checkpoint) {
      int p = undo_.back();
      undo_.pop_back();
      index_.Release(pod_node_[p], request_.gangs[pod_gang_[p]].pod_resources);
      pod_node_[p] = -1;
      --bound_[pod_gang_[p]];
    }
  }

  bool QuickFits(int domain, const Demand& demand, bool exact) const {
    if (index_.FreeGpus(domain) < demand.gpus) return false;
    if (!exact) return true;
    for (auto [gpus, count] : demand.shapes) {
      if (count > 0 && index_.Slots(domain, gpus) < count) return false;
    }
    return true;
  }

  // The constraints a gang is placed under: a scope, exclusions, and the hard scope implied by
  // required relations.
  struct Attempt {
    int scope = Cluster::kRoot;
    std::vector<int> excluded;
    bool valid = true;
    bool narrowed = false;  // a relation moved `scope` down
  };

  // Applies one relation between this gang and `other` (a placed sibling) to `attempt`.
  void ApplyRelation(RelationKind kind, int other, int level, Attempt& attempt) const {
    if (kind == RelationKind::kSameDomain) {
      int domain = -1;
      for (int p = subtree_begin_[other]; p < subtree_end_[other]; ++p) {
        if (pod_node_[p] < 0) continue;
        int d = cluster_.NodeDomain(pod_node_[p], level);
        if (domain >= 0 && d != domain) {
          attempt.valid = false;  // the other already spans several: no single domain to join
          return;
        }
        domain = d;
      }
      if (domain < 0) return;  // the other placed nothing: nothing to be near
      int narrowed = Intersect(attempt.scope, domain);
      if (narrowed < 0) {
        attempt.valid = false;
      } else if (narrowed != attempt.scope) {
        attempt.scope = narrowed;
        attempt.narrowed = true;
      }
      return;
    }
    std::set<int> domains;
    for (int p = subtree_begin_[other]; p < subtree_end_[other]; ++p) {
      if (pod_node_[p] >= 0) domains.insert(cluster_.NodeDomain(pod_node_[p], level));
    }
    attempt.excluded.insert(attempt.excluded.end(), domains.begin(), domains.end());
  }

  // Applies the gang's relations to `attempt` (required ones; `preferred` adds the others).
  // `reverse` also applies siblings' required relations that name this gang: a relation binds
  // both sides once both are placed, so the target's growth keeps to it too.
  void ApplyRelations(int g, bool preferred, Attempt& attempt, bool reverse = false) const {
    for (const Relation& relation : request_.gangs[g].relations) {
      if (!relation.required && !preferred) continue;
      ApplyRelation(relation.kind, relation.target_gang, relation.level.index, attempt);
    }
    int parent = request_.gangs[g].parent;
    if (!reverse || parent < 0) return;
    for (int sibling : request_.gangs[parent].children) {
      for (const Relation& relation : request_.gangs[sibling].relations) {
        if (!relation.required || relation.target_gang != g) continue;
        if (relation.kind == RelationKind::kSameDomain && BoundPods(sibling) == 0) {
          // The sibling will have to join this gang's domain later: stay inside one.
          ApplyRelation(relation.kind, g, relation.level.index, attempt);
        } else {
          ApplyRelation(relation.kind, sibling, relation.level.index, attempt);
        }
      }
    }
  }

  // The deeper of two domains when one contains the other, else -1.
  int Intersect(int a, int b) const {
    int level_a = cluster_.domain(a).level, level_b = cluster_.domain(b).level;
    if (level_a <= level_b) return cluster_.Ancestor(b, level_a) == a ? b : -1;
    return cluster_.Ancestor(a, level_b) == b ? a : -1;
  }

  bool HasPreferredRelation(int g) const {
    for (const Relation& relation : request_.gangs[g].relations) {
      if (!relation.required && BoundPods(relation.target_gang) > 0) return true;
    }
    return false;
  }

  bool Satisfied(int g, Target target) const {
    switch (target) {
      case Target::kFull:
        return IsComplete(g);
      case Target::kMin:
        return IsPlaced(g);
      case Target::kOne:
        return IsPlaced(g) && BoundPods(g) > 0;
    }
    return false;
  }

  bool PlaceGang(int g, int scope, Target target) {
    if (Satisfied(g, target)) {
      int lca = -1;
      for (int p = subtree_begin_[g]; p < subtree_end_[g]; ++p) {
        if (pod_node_[p] >= 0) lca = Lca(cluster_, lca, NodeDomain(pod_node_[p]));
      }
      chosen_[g] = lca >= 0 ? lca : scope;
      scope_[g] = HardScope(g, chosen_[g], -1);
      pending_[g].reset();
      return true;
    }
    std::vector<Attempt> attempts;
    if (HasPreferredRelation(g)) {
      Attempt preferred;
      preferred.scope = scope;
      ApplyRelations(g, true, preferred, /*reverse=*/true);
      if (preferred.valid) attempts.push_back(std::move(preferred));
    }
    Attempt required;
    required.scope = scope;
    ApplyRelations(g, false, required, /*reverse=*/true);
    if (!required.valid) {
      RecordRelationFailure(g, scope);
      return false;
    }
    const int required_scope = required.narrowed ? required.scope : -1;
    attempts.push_back(std::move(required));
    for (const Attempt& attempt : attempts) {
      for (int d : attempt.excluded) index_.Exclude(d, +1);
      bool ok = Ladder(g, attempt.scope, required_scope, target);
      for (int d : attempt.excluded) index_.Exclude(d, -1);
      if (ok) return true;
    }
    return false;
  }

  // The domain all of the gang's pods must stay in once it is placed in `chosen`: the deepest of
  // its parent's hard scope, the domain a required relation confined it to (`required_scope`, or
  // -1) and its required level's domain. Growth never leaves it.
  int HardScope(int g, int chosen, int required_scope) const {
    const Gang& gang = request_.gangs[g];
    int hard = gang.parent < 0 ? Cluster::kRoot : scope_[gang.parent];
    auto deeper = [&](int candidate) {
      if (cluster_.domain(candidate).level > cluster_.domain(hard).level) hard = candidate;
    };
    if (required_scope >= 0) deeper(required_scope);
    if (gang.required.index >= 0 && gang.required.index <= cluster_.domain(chosen).level) {
      deeper(cluster_.Ancestor(chosen, gang.required.index));
    }
    return hard;
  }

  bool Ladder(int g, int scope, int required_scope, Target target) {
    const Gang& gang = request_.gangs[g];
    const int scope_level = cluster_.domain(scope).level;
    const int coarsest = std::max(gang.required.index, scope_level);
    const int finest = std::max(coarsest, gang.preferred.index);
    const Demand& demand = target == Target::kFull ? full_[g] : min_[g];
    const bool exact = target == Target::kFull || gang.leaf;
    const bool has_fixed = fixed_lca_[g] >= 0;
    if (has_fixed && cluster_.Ancestor(fixed_lca_[g], scope_level) != scope) {
      RecordPending(g, scope, coarsest, target);
      return false;
    }
    for (int level = finest; level >= coarsest; --level) {
      int first, last;
      if (level == scope_level) {
        first = last = scope;
      } else if (has_fixed) {
        if (cluster_.domain(fixed_lca_[g]).level < level) continue;  // already spans several
        first = last = cluster_.Ancestor(fixed_lca_[g], level);
      } else {
        std::tie(first, last) = cluster_.DescendantsAt(scope, level);
      }
      int trials = 0;
      // Fullest first, by repeated selection (usually the first pick succeeds).
      int64_t last_free = -1;
      int last_id = -1;
      while (trials < options_.max_trials_per_level) {
        int pick = -1;
        int64_t pick_free = 0;
        for (int d = first; d <= last; ++d) {
          int64_t free = index_.FreeGpus(d);
          if (last_id >= 0 && (free < last_free || (free == last_free && d <= last_id))) continue;
          if (pick >= 0 && (free > pick_free || (free == pick_free && d > pick))) continue;
          if (!has_fixed && !QuickFits(d, demand, exact)) continue;
          if (index_.Excluded(d)) continue;
          pick = d;
          pick_free = free;
        }
        if (pick < 0) break;
        last_free = pick_free;
        last_id = pick;
        ++trials;
        size_t checkpoint = undo_.size();
        chosen_[g] = pick;
        scope_[g] = HardScope(g, pick, required_scope);
        if (PlaceIn(g, pick, target)) {
          pending_[g].reset();
          return true;
        }
        Rollback(checkpoint);
      }
    }
    RecordPending(g, scope, coarsest, target);
    return false;
  }

  bool PlaceIn(int g, int domain, Target target) {
    const Gang& gang = request_.gangs[g];
    if (gang.leaf) {
      int need = WantedPods(g, target) - bound_[g];
      for (int p = pod_begin_[g]; p < pod_end_[g] && need > 0; ++p) {
        if (pod_node_[p] >= 0) continue;
        int node = index_.FindNode(domain, gang.pod_resources, options_.policy);
        if (node < 0) return false;
        Bind(p, node);
        --need;
      }
      return need <= 0;
    }
    if (target == Target::kFull) {
      for (int child : gang.placement_order) {
        if (!PlaceGang(child, domain, Target::kFull)) return false;
      }
      return true;
    }
    int placed = 0;
    for (int child : gang.children) placed += IsPlaced(child);
    int remaining = static_cast<int>(gang.children.size()) - placed;
    for (int child : gang.placement_order) {
      if (placed >= gang.min_children) break;
      if (IsPlaced(child)) continue;
      if (placed + remaining < gang.min_children) return false;
      --remaining;
      if (PlaceGang(child, domain, Target::kMin)) ++placed;
    }
    if (placed < gang.min_children) return false;
    if (target == Target::kOne && BoundPods(g) == 0) {
      for (int child : gang.placement_order) {
        if (PlaceGang(child, domain, Target::kOne)) return true;
      }
      return false;
    }
    return true;
  }

  int WantedPods(int g, Target target) const {
    const Gang& gang = request_.gangs[g];
    switch (target) {
      case Target::kFull:
        return static_cast<int>(gang.pod_names.size());
      case Target::kMin:
        return gang.min_pods;
      case Target::kOne:
        return std::max(gang.min_pods, 1);
    }
    return 0;
  }

  // Elastic growth above the minimums: each missing child is a new atomic gang, placed near its
  // siblings first, then anywhere its parent's hard scope allows; running pods never move.
  void Grow(int g) {
    // Growth keeps to the parent's (possibly narrowed) scope and to every required relation,
    // in both directions.
    const Gang& gang = request_.gangs[g];
    Attempt constraint;
    constraint.scope = Intersect(scope_[g], gang.parent < 0 ? Cluster::kRoot : scope_[gang.parent]);
    if (constraint.scope < 0) return;
    ApplyRelations(g, false, constraint, /*reverse=*/true);
    if (!constraint.valid) return;
    const int saved_scope = scope_[g], saved_chosen = chosen_[g];
    scope_[g] = constraint.scope;
    int chosen = Intersect(chosen_[g], scope_[g]);
    chosen_[g] = chosen < 0 ? scope_[g] : chosen;
    for (int d : constraint.excluded) index_.Exclude(d, +1);
    GrowWithin(g);
    for (int d : constraint.excluded) index_.Exclude(d, -1);
    scope_[g] = saved_scope;
    chosen_[g] = saved_chosen;
  }

  void GrowWithin(int g) {
    const Gang& gang = request_.gangs[g];
    std::vector<int> scopes = {chosen_[g]};
    if (scope_[g] != chosen_[g]) scopes.push_back(scope_[g]);
    if (gang.leaf) {
      for (int p = pod_begin_[g]; p < pod_end_[g]; ++p) {
        if (pod_node_[p] >= 0) continue;
        for (int scope : scopes) {
          int node = index_.FindNode(scope, gang.pod_resources, options_.policy);
          if (node >= 0) {
            Bind(p, node);
            break;
          }
        }
      }
      return;
    }
    for (int child : gang.placement_order) {
      if (IsPlaced(child) && BoundPods(child) > 0) {
        Grow(child);
        continue;
      }
      // Not placed, or placed with nothing bound (a minimum of 0): it picks its domain now.
      bool placed = false;
      for (int scope : scopes) {
        if ((placed = PlaceGang(child, scope, Target::kFull))) break;
      }
      for (size_t i = 0; i < scopes.size() && !placed; ++i) {
        if ((placed = PlaceGang(child, scopes[i], Target::kOne))) Grow(child);
      }
    }
  }

  void RecordRelationFailure(int g, int scope) {
    PendingReason reason;
    reason.gang = g;
    reason.level = "cluster";
    reason.scope = DomainName(cluster_, scope);
    for (const Relation& relation : request_.gangs[g].relations) {
      if (!relation.required || relation.kind != RelationKind::kSameDomain) continue;
      int node = FirstBoundNode(relation.target_gang);
      if (node < 0) continue;
      reason.message = absl::StrCat(
          "required to share a ", relation.level.name, " with '", relation.target, "' (placed in ",
          cluster_.domain(cluster_.NodeDomain(node, relation.level.index)).path,
          "), which is outside the domain it must stay in (", DomainName(cluster_, scope), ")");
    }
    pending_[g] = std::move(reason);
  }

  // After the request failed: tries each unplaced child on its own at its minimum (then rolls
  // back), so the report names the subgroups that cannot fit even alone, with their own best
  // domain, and drops those that only fail for lack of room beside their siblings. A few per
  // gang, two levels down: enough to point at the culprit without a trial per instance.
  void Explain(int g, int scope, int depth) {
    const Gang& gang = request_.gangs[g];
    if (gang.leaf || depth >= 2) return;
    int explained = 0;
    for (int child : gang.placement_order) {
      if (explained == 4) break;
      if (IsPlaced(child)) continue;
      size_t checkpoint = undo_.size();
      bool fits = PlaceGang(child, scope, Target::kMin);
      Rollback(checkpoint);
      if (fits) {
        pending_[child].reset();
        continue;
      }
      ++explained;
      Explain(child, scope, depth + 1);
    }
  }

  void RecordPending(int g, int scope, int level, Target target) {
    const Gang& gang = request_.gangs[g];
    PendingReason reason;
    reason.gang = g;
    reason.level = LevelName(cluster_, level);
    reason.scope = scope == Cluster::kRoot ? "" : cluster_.domain(scope).path;
    std::string in_level =
        level < 0 ? std::string("in the cluster")
                  : absl::StrCat("in one ", reason.level,
                                 scope == Cluster::kRoot || cluster_.domain(scope).level == level
                                     ? ""
                                     : absl::StrCat(" of ", reason.scope));
    if (level >= 0 && cluster_.domain(scope).level == level && scope != Cluster::kRoot) {
      in_level = absl::StrCat("in ", reason.level, " ", reason.scope);
    }
    int first, last;
    std::tie(first, last) =
        cluster_.DescendantsAt(scope, std::max(level, cluster_.domain(scope).level));
    if (level < 0) first = last = Cluster::kRoot;
    const int64_t per_pod = gang.leaf ? gang.pod_resources.gpus : 0;
    int best = -1;
    for (int d = first; d <= last; ++d) {
      if (index_.Excluded(d)) continue;
      if (best < 0 || (per_pod > 0 && index_.Slots(d, per_pod) > index_.Slots(best, per_pod)) ||
          ((per_pod == 0 || index_.Slots(d, per_pod) == index_.Slots(best, per_pod)) &&
           index_.FreeGpus(d) > index_.FreeGpus(best))) {
        best = d;
      }
    }
    if (best >= 0) {
      reason.best_domain = DomainName(cluster_, best);
      reason.best_domain_free_gpus = index_.FreeGpus(best);
      reason.best_domain_pod_room = per_pod > 0 ? index_.Slots(best, per_pod) : 0;
    }
    std::string best_text =
        best < 0 ? std::string("every candidate is excluded by a spread relation")
        : per_pod > 0 && reason.best_domain_free_gpus == 0 && level >= 0
            ? absl::StrCat("no ", reason.level, " there has a free GPU")
        : level < 0 ? absl::StrCat("the cluster has ", reason.best_domain_free_gpus, " free GPUs")
                    : absl::StrCat("best ", reason.level, " ", reason.best_domain, " has ",
                                   reason.best_domain_free_gpus, " free GPUs");
    if (gang.leaf) {
      reason.pods_needed = WantedPods(g, target) - bound_[g];
      reason.gpus_per_pod = per_pod;
      reason.gpus_needed = per_pod * reason.pods_needed;
      std::string shape =
          absl::StrCat(reason.pods_needed, reason.pods_needed == 1 ? " pod" : " pods");
      if (per_pod > 0) absl::StrAppend(&shape, " x ", per_pod, " GPUs");
      if (gang.pod_resources.cpu_millis > 0) {
        absl::StrAppend(&shape, ", ", FormatCpu(gang.pod_resources.cpu_millis), " CPU");
      }
      if (gang.pod_resources.memory_bytes > 0) {
        absl::StrAppend(&shape, ", ", FormatBytes(gang.pod_resources.memory_bytes), " memory");
      }
      reason.message = absl::StrCat("needs ", shape, " ", in_level, "; ", best_text);
      if (best >= 0 && per_pod > 0 && reason.best_domain_free_gpus > 0) {
        absl::StrAppend(&reason.message, " (room for ", reason.best_domain_pod_room, ")");
      } else if (best >= 0 && per_pod == 0) {
        absl::StrAppend(&reason.message, "; no node there has the CPU/memory left");
      }
    } else {
      const Demand& demand = target == Target::kFull ? full_[g] : min_[g];
      int placed = 0;
      for (int child : gang.children) placed += IsPlaced(child);
      reason.children_needed =
          target == Target::kFull ? static_cast<int>(gang.children.size()) : gang.min_children;
      reason.children_placed = placed;
      reason.gpus_needed = demand.gpus;
      reason.message = absl::StrCat("needs ", reason.children_needed, " of ", gang.children.size(),
                                    " children (each at its minimum, at least ", demand.gpus,
                                    " GPUs) ", in_level, "; ", best_text);
    }
    pending_[g] = std::move(reason);
  }

  CapacityIndex& index_;
  const Cluster& cluster_;
  const PlacementRequest& request_;
  const PlaceOptions& options_;
  std::vector<int> dfs_;
  std::vector<int> pod_begin_, pod_end_, subtree_begin_, subtree_end_;
  std::vector<int> pod_node_, pod_gang_;
  std::vector<bool> fixed_;
  bool any_fixed_ = false;
  std::vector<int> bound_, chosen_, scope_, fixed_lca_;
  std::vector<Demand> full_, min_;
  std::vector<std::optional<PendingReason>> pending_;
  std::vector<int> undo_;
};

}  // namespace

// A set of pods preemption may take at once: whole instances above a group's minimum, or a
// whole workload.
struct Scheduler::Unit {
  int workload = -1;
  bool whole = false;
  std::vector<int> pods;  // flat pod indices within the workload
  std::vector<std::string> instances;
  int priority = 0;
};

Scheduler::Scheduler(const Cluster& cluster) : cluster_(&cluster), index_(cluster) {}
Scheduler::~Scheduler() = default;

absl::Status Scheduler::AddRunning(const ClusterState& state) {
  for (const RunningWorkload& workload : state.workloads) {
    for (const RunningWorkload& existing : state_.workloads) {
      if (existing.name == workload.name) {
        return absl::InvalidArgumentError(
            absl::StrCat("workload '", workload.name, "' is already running"));
      }
    }
    for (const RunningGroup& group : workload.groups) {
      for (const RunningInstance& instance : group.instances) {
        for (const RunningPod& pod : instance.pods) {
          if (pod.node < 0 || pod.node >= cluster_->num_nodes()) {
            return absl::InvalidArgumentError(
                absl::StrCat("workload '", workload.name, "' pod '", pod.name, "' has no node"));
          }
          index_.Consume(pod.node, pod.resources);
        }
      }
    }
    state_.workloads.push_back(workload);
    evicted_.push_back(std::vector<int>(workload.NumPods(), 0));
    removed_.push_back(std::vector<char>(workload.NumPods(), 0));
  }
  return absl::OkStatus();
}

namespace {

const RunningPod& FlatPod(const RunningWorkload& workload, int flat) {
  for (const RunningGroup& group : workload.groups) {
    for (const RunningInstance& instance : group.instances) {
      if (flat < static_cast<int>(instance.pods.size())) return instance.pods[flat];
      flat -= static_cast<int>(instance.pods.size());
    }
  }
  return workload.groups.front().instances.front().pods.front();  // unreachable for valid input
}

}  // namespace

void Scheduler::EvictUnit(const Unit& unit, int sign) {
  const RunningWorkload& workload = state_.workloads[unit.workload];
  for (int flat : unit.pods) {
    int& count = evicted_[unit.workload][flat];
    const RunningPod& pod = FlatPod(workload, flat);
    if (sign > 0 && count++ == 0) index_.Release(pod.node, pod.resources);
    if (sign < 0 && --count == 0) index_.Consume(pod.node, pod.resources);
  }
}

PlacementResult Scheduler::Place(const PlacementRequest& request, const PlaceOptions& options) {
  std::map<std::string, int> running_pods;
  int own = -1;
  for (size_t w = 0; w < state_.workloads.size(); ++w) {
    if (state_.workloads[w].name != request.name) continue;
    own = static_cast<int>(w);
    int flat = 0;
    for (const RunningGroup& group : state_.workloads[w].groups) {
      for (const RunningInstance& instance : group.instances) {
        for (const RunningPod& pod : instance.pods) {
          if (!removed_[w][flat++]) running_pods[pod.name] = pod.node;
        }
      }
    }
  }
  PlacementResult failure;
  {
    Placer placer(index_, request, options, running_pods);
    bool ok = placer.Run();
    PlacementResult result = placer.Result(ok);
    if (ok && options.commit) return result;
    placer.RollbackAll();
    if (ok || !options.allow_preemption) return result;
    // Keep the first attempt's reasons: they describe the cluster before any eviction.
    failure = std::move(result);
  }

  // Preemption candidates, cheapest first.
  std::vector<Unit> units;
  for (size_t w = 0; w < state_.workloads.size(); ++w) {
    const RunningWorkload& workload = state_.workloads[w];
    if (static_cast<int>(w) == own || workload.priority >= request.priority) continue;
    int budget = workload.max_disrupted_pods.value_or(1 << 30);
    if (budget <= 0) continue;
    int flat = 0, trimmed = 0;
    std::vector<int> all;
    for (const RunningGroup& group : workload.groups) {
      std::vector<std::pair<int, int>> ranges;  // flat range per instance; empty once evicted
      int live = 0;
      for (const RunningInstance& instance : group.instances) {
        int begin = flat;
        flat += static_cast<int>(instance.pods.size());
        if (removed_[w][begin]) {  // preempted by an earlier request: gone
          ranges.push_back({begin, begin});
          continue;
        }
        ranges.push_back({begin, flat});
        for (int p = begin; p < flat; ++p) all.push_back(p);
        ++live;
      }
      int extra = live - group.min_available;
      // Live instances above the minimum, newest first.
      for (int i = static_cast<int>(group.instances.size()) - 1; i >= 0 && extra > 0; --i) {
        int size = ranges[i].second - ranges[i].first;
        if (size == 0) continue;
        --extra;
        if (trimmed + size > budget) break;
        trimmed += size;
        Unit unit;
        unit.workload = static_cast<int>(w);
        unit.priority = workload.priority;
        unit.instances = {group.instances[i].name};
        for (int p = ranges[i].first; p < ranges[i].second; ++p) unit.pods.push_back(p);
        units.push_back(std::move(unit));
      }
    }
    if (!all.empty() && static_cast<int>(all.size()) <= budget) {
      Unit unit;
      unit.workload = static_cast<int>(w);
      unit.priority = workload.priority;
      unit.whole = true;
      unit.pods = std::move(all);
      units.push_back(std::move(unit));
    }
  }
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) {
    if (a.priority != b.priority) return a.priority < b.priority;
    if (a.whole != b.whole) return !a.whole;
    return a.pods.size() < b.pods.size();
  });

  auto fits = [&]() {
    PlaceOptions dry = options;
    dry.commit = false;
    Placer placer(index_, request, dry, running_pods);
    bool ok = placer.Run();
    placer.RollbackAll();
    return ok;
  };
  std::vector<size_t> chosen;
  bool ok = false;
  for (size_t u = 0; u < units.size() && !ok; ++u) {
    EvictUnit(units[u], +1);
    chosen.push_back(u);
    ok = fits();
  }
  if (!ok) {
    for (size_t u : chosen) EvictUnit(units[u], -1);
    if (!units.empty()) {
      failure.note = absl::StrCat("preempting all ", units.size(),
                                  " lower-priority candidates within their budgets would not make "
                                  "room");
    }
    return failure;
  }
  // Prune: give back every victim the placement does not need, latest first.
  for (size_t i = chosen.size(); i-- > 0;) {
    EvictUnit(units[chosen[i]], -1);
    if (fits()) {
      chosen.erase(chosen.begin() + static_cast<long>(i));
    } else {
      EvictUnit(units[chosen[i]], +1);
    }
  }
  Placer placer(index_, request, options, running_pods);
  bool placed = placer.Run();
  PlacementResult result = placer.Result(placed);
  std::map<int, Eviction> by_workload;
  for (size_t u : chosen) {
    const Unit& unit = units[u];
    const RunningWorkload& workload = state_.workloads[unit.workload];
    Eviction& eviction = by_workload[unit.workload];
    eviction.workload = workload.name;
    eviction.priority = workload.priority;
    eviction.whole_workload = eviction.whole_workload || unit.whole;
    for (const std::string& instance : unit.instances) eviction.instances.push_back(instance);
  }
  for (auto& [w, eviction] : by_workload) {
    const RunningWorkload& workload = state_.workloads[w];
    int flat = 0;
    std::vector<std::string> instances;
    for (const RunningGroup& group : workload.groups) {
      for (const RunningInstance& instance : group.instances) {
        bool any = false;
        for (const RunningPod& pod : instance.pods) {
          if (evicted_[w][flat++] > 0) {
            eviction.pods.push_back({pod.name, pod.node});
            any = true;
          }
        }
        if (any) instances.push_back(instance.name);
      }
    }
    eviction.instances = std::move(instances);
    result.evictions.push_back(std::move(eviction));
  }
  if (!placed || !options.commit) {
    placer.RollbackAll();
    for (size_t u : chosen) EvictUnit(units[u], -1);
    return result;
  }
  // Committed: the victims are gone for good (their capacity stays released).
  for (size_t w = 0; w < evicted_.size(); ++w) {
    for (size_t p = 0; p < evicted_[w].size(); ++p) {
      if (evicted_[w][p] > 0) {
        evicted_[w][p] = 0;
        removed_[w][p] = 1;
      }
    }
  }
  return result;
}

void Scheduler::Release(const PlacementRequest& request, const PlacementResult& result) {
  for (const PodPlacement& pod : result.pods) {
    if (!pod.running) index_.Release(pod.node, request.gangs[pod.gang].pod_resources);
  }
}

std::vector<int> GangsBelowMinimum(const PlacementRequest& request,
                                   const std::vector<PodPlacement>& pods) {
  const int num_gangs = static_cast<int>(request.gangs.size());
  std::vector<int> bound(num_gangs, 0);
  for (const PodPlacement& pod : pods) ++bound[pod.gang];
  std::vector<bool> placed(num_gangs, false);
  for (int g = num_gangs - 1; g >= 0; --g) {  // children come after their parents
    const Gang& gang = request.gangs[g];
    if (gang.leaf) {
      placed[g] = bound[g] >= gang.min_pods;
    } else {
      int count = 0;
      for (int child : gang.children) count += placed[child];
      placed[g] = count >= gang.min_children;
    }
  }
  std::vector<int> below;
  for (int g = 0; g < num_gangs; ++g) {
    if (!request.gangs[g].leaf && !placed[g]) below.push_back(g);
  }
  return below;
}

std::vector<PodPlacement> PlacePodByPod(CapacityIndex& index, const PlacementRequest& request,
                                        FitPolicy policy) {
  std::vector<PodPlacement> placed;
  for (size_t g = 0; g < request.gangs.size(); ++g) {
    const Gang& gang = request.gangs[g];
    for (size_t p = 0; p < gang.pod_names.size(); ++p) {
      int node = index.FindNode(Cluster::kRoot, gang.pod_resources, policy);
      if (node < 0) continue;
      index.Consume(node, gang.pod_resources);
      placed.push_back({static_cast<int>(g), static_cast<int>(p), node, false});
    }
  }
  return placed;
}

}  // namespace tandem::sched
