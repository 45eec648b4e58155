#include "sched/synthetic.h"

#include "absl/strings/str_cat.h"

namespace tandem::sched {

absl::StatusOr<Cluster> MakeSyntheticCluster(const SyntheticClusterShape& shape) {
  std::vector<Level> levels;
  double bandwidth = shape.bandwidth_top_gbps;
  for (const auto& [name, fanout] : shape.levels) {
    levels.push_back({name, DefaultNodeLabel(name), bandwidth});
    bandwidth *= 2;
  }
  levels.push_back({"node", DefaultNodeLabel("node"), bandwidth});
  std::vector<NodeSpec> nodes;
  std::vector<int> digits(shape.levels.size(), 0);
  int64_t leaves = 1;
  for (const auto& level : shape.levels) leaves *= level.second;
  for (int64_t leaf = 0; leaf < leaves; ++leaf) {
    int64_t rest = leaf;
    for (int l = static_cast<int>(shape.levels.size()) - 1; l >= 0; --l) {
      digits[l] = static_cast<int>(rest % shape.levels[l].second);
      rest /= shape.levels[l].second;
    }
    std::vector<std::string> path;
    for (size_t l = 0; l < shape.levels.size(); ++l) {
      path.push_back(absl::StrCat(shape.levels[l].first.substr(0, 3), digits[l]));
    }
    for (int n = 0; n < shape.nodes_per_leaf_domain; ++n) {
      NodeSpec node;
      node.name = absl::StrCat("n", leaf * shape.nodes_per_leaf_domain + n);
      node.capacity = {shape.gpus_per_node, shape.cpu_millis, shape.memory_bytes};
      node.path = path;
      nodes.push_back(std::move(node));
    }
  }
  return Cluster::Build(std::move(levels), std::move(nodes));
}

PlacementRequest RandomRequest(std::mt19937_64& rng, const Cluster& cluster,
                               const std::string& name, const RandomRequestShape& shape) {
  auto uniform = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  auto chance = [&](double p) { return std::uniform_real_distribution<double>(0, 1)(rng) < p; };
  auto random_level = [&](int coarsest) {
    return uniform(std::max(coarsest, 0), cluster.num_levels() - 1);
  };
  auto level_ref = [&](int index) {
    LevelRef ref;
    ref.name = cluster.levels()[index].name;
    ref.where = "random";
    return ref;
  };
  PlacementRequest request;
  request.name = name;
  request.filename = "random";
  AddGang(request, -1, name);
  int roles = uniform(1, shape.max_roles);
  for (int r = 0; r < roles; ++r) {
    int role = AddGang(request, 0, absl::StrCat(name, "-role", r));
    int instances = uniform(1, shape.max_instances);
    request.gangs[role].min_children = uniform(0, instances);
    if (chance(shape.constraint_probability)) {
      int required = random_level(0);
      request.gangs[role].required = level_ref(required);
      if (chance(0.5)) request.gangs[role].preferred = level_ref(random_level(required));
    } else if (chance(shape.constraint_probability)) {
      request.gangs[role].preferred = level_ref(random_level(0));
    }
    if (r > 0 && chance(shape.relation_probability)) {
      Relation relation;
      relation.kind = chance(0.5) ? RelationKind::kSameDomain : RelationKind::kSpread;
      relation.target = request.gangs[request.gangs[0].children[uniform(0, r - 1)]].name;
      relation.level = level_ref(random_level(0));
      relation.required = chance(0.5);
      request.gangs[role].relations.push_back(std::move(relation));
    }
    int pods = uniform(1, shape.max_pods_per_instance);
    int64_t gpus = shape.gpu_sizes[uniform(0, static_cast<int>(shape.gpu_sizes.size()) - 1)];
    gpus = std::min<int64_t>(gpus, cluster.max_node_gpus());
    bool instance_required = chance(shape.constraint_probability);
    int instance_level = random_level(0);
    for (int i = 0; i < instances; ++i) {
      int instance = AddGang(request, role, absl::StrCat(request.gangs[role].name, "-", i));
      Gang& gang = request.gangs[instance];
      gang.leaf = true;
      gang.min_pods = pods;
      gang.pod_resources.gpus = gpus;
      if (instance_required) gang.required = level_ref(instance_level);
      for (int k = 0; k < pods; ++k) gang.pod_names.push_back(absl::StrCat(gang.name, "-", k));
    }
  }
  request.gangs[0].min_children = uniform(0, roles);
  absl::Status resolved = ResolveRequest(cluster, request);
  (void)resolved;  // generated references always resolve; tests check ResolveRequest itself
  return request;
}

}  // namespace tandem::sched
