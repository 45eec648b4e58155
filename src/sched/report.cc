#include "sched/report.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace tandem::sched {
namespace {

std::string DomainPath(const Cluster& cluster, int domain) {
  return domain <= 0 ? std::string("") : cluster.domain(domain).path;
}

std::string LevelOf(const Cluster& cluster, int domain) {
  return domain <= 0 ? std::string("cluster") : cluster.levels()[cluster.domain(domain).level].name;
}

std::string Padded(std::string text, size_t width) {
  if (text.size() < width) text.append(width - text.size(), ' ');
  return text;
}

}  // namespace

std::string FormatPlacementTable(const Cluster& cluster, const PlacementRequest& request,
                                 const PlacementResult& result) {
  std::string out;
  int running = static_cast<int>(result.pods.size()) - result.new_pods;
  absl::StrAppendFormat(&out,
                        "request %s (priority %d): %s, %d of %d pods bound (%d new, %d "
                        "already running), placement score %.2f\n",
                        request.name, request.priority, result.scheduled ? "SCHEDULED" : "PENDING",
                        static_cast<int>(result.pods.size()), request.NumPods(), result.new_pods,
                        running, result.score);
  if (!result.pods.empty()) {
    size_t pod_width = 3, gang_width = 4, node_width = 4;
    for (const PodPlacement& pod : result.pods) {
      const Gang& gang = request.gangs[pod.gang];
      pod_width = std::max(pod_width, gang.pod_names[pod.pod].size());
      gang_width = std::max(gang_width, gang.path.size());
      node_width = std::max(node_width, cluster.node(pod.node).name.size());
    }
    absl::StrAppend(&out, "\n", Padded("POD", pod_width + 2), Padded("GANG", gang_width + 2),
                    Padded("NODE", node_width + 2), Padded("GPU", 5), "DOMAIN\n");
    for (const PodPlacement& pod : result.pods) {
      const Gang& gang = request.gangs[pod.gang];
      const NodeSpec& node = cluster.node(pod.node);
      int parent = cluster.domain(cluster.NodeDomain(pod.node, cluster.node_level())).parent;
      absl::StrAppend(&out, Padded(gang.pod_names[pod.pod], pod_width + 2),
                      Padded(gang.path, gang_width + 2), Padded(node.name, node_width + 2),
                      Padded(absl::StrCat(gang.pod_resources.gpus), 5),
                      parent <= 0 ? std::string("-") : cluster.domain(parent).path,
                      pod.running ? "  (running)" : "", "\n");
    }
  }
  std::string gangs;
  for (const GangOutcome& outcome : result.gangs) {
    const Gang& gang = request.gangs[outcome.gang];
    bool interesting = !gang.leaf || outcome.has_preference || !outcome.notes.empty();
    if (!interesting || outcome.pods_bound == 0) continue;
    std::string line = absl::StrCat("  ", gang.path, ": ");
    if (gang.leaf) {
      absl::StrAppend(&line, outcome.pods_bound, "/", outcome.pods_total, " pods");
    } else {
      int placed = 0;
      for (int child : gang.children) placed += result.gangs[child].placed;
      absl::StrAppend(&line, placed, "/", gang.children.size(), " placed (minimum ",
                      gang.min_children, ")");
    }
    if (outcome.domain <= 0) {
      absl::StrAppend(&line, ", across the cluster");
    } else {
      absl::StrAppend(&line, ", within ", LevelOf(cluster, outcome.domain), " ",
                      DomainPath(cluster, outcome.domain));
    }
    if (outcome.has_preference) {
      absl::StrAppend(&line, "; preferred ", cluster.levels()[gang.preferred.index].name, ": ",
                      outcome.preference_met ? "met" : "not met");
    }
    for (const std::string& note : outcome.notes) absl::StrAppend(&line, "; ", note);
    absl::StrAppend(&gangs, line, "\n");
  }
  if (!gangs.empty()) absl::StrAppend(&out, "\ngangs:\n", gangs);
  if (!result.evictions.empty()) {
    absl::StrAppend(&out, "\npreemptions:\n");
    for (const Eviction& eviction : result.evictions) {
      absl::StrAppend(&out, "  evict ", eviction.whole_workload ? "workload " : "from ",
                      eviction.workload, " (priority ", eviction.priority,
                      "): ", eviction.pods.size(), " pods in ", eviction.instances.size(),
                      " instance(s): ", absl::StrJoin(eviction.instances, ", "), "\n");
    }
  }
  if (!result.pending.empty()) {
    absl::StrAppend(&out, "\npending:\n");
    for (const PendingReason& reason : result.pending) {
      absl::StrAppend(&out, "  ", request.gangs[reason.gang].path,
                      reason.blocking ? "" : " (above its minimum)", ": ", reason.message, "\n");
    }
  }
  if (!result.note.empty()) absl::StrAppend(&out, "\nnote: ", result.note, "\n");
  return out;
}

nlohmann::json PlacementToJson(const Cluster& cluster, const PlacementRequest& request,
                               const PlacementResult& result) {
  nlohmann::json json;
  json["request"] = request.name;
  json["priority"] = request.priority;
  json["scheduled"] = result.scheduled;
  json["score"] = result.score;
  json["newPods"] = result.new_pods;
  json["pods"] = nlohmann::json::array();
  for (const PodPlacement& pod : result.pods) {
    const Gang& gang = request.gangs[pod.gang];
    int parent = cluster.domain(cluster.NodeDomain(pod.node, cluster.node_level())).parent;
    json["pods"].push_back({{"pod", gang.pod_names[pod.pod]},
                            {"gang", gang.path},
                            {"node", cluster.node(pod.node).name},
                            {"domain", parent <= 0 ? "" : cluster.domain(parent).path},
                            {"gpus", gang.pod_resources.gpus},
                            {"running", pod.running}});
  }
  json["gangs"] = nlohmann::json::array();
  for (const GangOutcome& outcome : result.gangs) {
    nlohmann::json gang = {{"gang", request.gangs[outcome.gang].path},
                           {"placed", outcome.placed},
                           {"podsBound", outcome.pods_bound},
                           {"podsTotal", outcome.pods_total}};
    if (outcome.domain >= 0) {
      gang["domain"] = outcome.domain == 0 ? "" : cluster.domain(outcome.domain).path;
      gang["level"] = LevelOf(cluster, outcome.domain);
    }
    if (outcome.has_preference) gang["preferenceMet"] = outcome.preference_met;
    if (!outcome.notes.empty()) gang["relations"] = outcome.notes;
    json["gangs"].push_back(std::move(gang));
  }
  json["evictions"] = nlohmann::json::array();
  for (const Eviction& eviction : result.evictions) {
    nlohmann::json pods = nlohmann::json::array();
    for (const auto& [name, node] : eviction.pods) {
      pods.push_back({{"pod", name}, {"node", cluster.node(node).name}});
    }
    json["evictions"].push_back({{"workload", eviction.workload},
                                 {"priority", eviction.priority},
                                 {"wholeWorkload", eviction.whole_workload},
                                 {"instances", eviction.instances},
                                 {"pods", pods}});
  }
  json["pending"] = nlohmann::json::array();
  for (const PendingReason& reason : result.pending) {
    nlohmann::json item = {{"gang", request.gangs[reason.gang].path},
                           {"blocking", reason.blocking},
                           {"level", reason.level},
                           {"scope", reason.scope},
                           {"message", reason.message}};
    if (request.gangs[reason.gang].leaf) {
      item["podsNeeded"] = reason.pods_needed;
      item["gpusPerPod"] = reason.gpus_per_pod;
    } else {
      item["childrenNeeded"] = reason.children_needed;
      item["childrenPlaced"] = reason.children_placed;
    }
    item["gpusNeeded"] = reason.gpus_needed;
    if (!reason.best_domain.empty()) {
      item["bestDomain"] = {{"path", reason.best_domain},
                            {"freeGpus", reason.best_domain_free_gpus},
                            {"podRoom", reason.best_domain_pod_room}};
    }
    json["pending"].push_back(std::move(item));
  }
  if (!result.note.empty()) json["note"] = result.note;
  return json;
}

}  // namespace tandem::sched
