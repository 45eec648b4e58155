#include "deploy/orchestrator.h"

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "core/env.h"
#include "core/logging.h"
#include "core/status.h"
#include "deploy/command_line.h"
#include "deploy/internal/http_call.h"
#include "deploy/orchestrator_plan.h"
#include "deploy/process.h"
#include "nlohmann/json.hpp"

namespace tandem::deploy {
namespace {

constexpr char kLoopback[] = "127.0.0.1";

struct Proc {
  int rank = 0;
  pid_t pid = 0;  // also its process group
  int port = 0;
  int kv_port = 0;
  std::string log_path;
  bool ready = false;
  std::string epoch;
};

// One role instance: a TP group of `nodes_per_instance` processes, restarted together.
struct Instance {
  std::string role;
  int ordinal = 0;
  std::vector<Proc> procs;
  int restarts = 0;
  int crashes_in_row = 0;
  bool crashed = false;  // waiting for restart_at (and for its other processes to be reaped)
  int64_t restart_at = 0;
  int64_t ready_since = 0;
  std::string last_exit;

  std::string Id() const { return absl::StrCat(role, "/", ordinal); }
  bool Ready() const {
    if (crashed) return false;
    for (const Proc& proc : procs) {
      if (proc.pid == 0 || !proc.ready) return false;
    }
    return true;
  }
  bool Running() const {
    for (const Proc& proc : procs) {
      if (proc.pid != 0) return true;
    }
    return false;
  }
};

// A unit member: one role instance, or one scaling-group replica.
struct Member {
  int64_t id = 0;
  std::string key;  // the unit template it runs
  int generation = 0;
  std::vector<Role> roles;  // the role specs it was started from (restarts reuse them)
  std::vector<Instance> instances;
  bool draining = false;
  bool term_sent = false;
  int64_t term_at = 0;
  int64_t kill_at = 0;
  int64_t pending_since = 0;  // when it was launched, or stopped being ready
  bool ready = false;

  bool AllReady() const {
    return std::all_of(instances.begin(), instances.end(),
                       [](const Instance& instance) { return instance.Ready(); });
  }
  bool Running() const {
    return std::any_of(instances.begin(), instances.end(),
                       [](const Instance& instance) { return instance.Running(); });
  }
  MemberPhase Phase() const {
    if (draining) return MemberPhase::kDraining;
    if (ready) return MemberPhase::kReady;
    for (const Instance& instance : instances) {
      if (instance.crashed) return MemberPhase::kRestarting;
    }
    return MemberPhase::kStarting;
  }
};

struct Unit {
  UnitSpec spec;
  std::vector<std::unique_ptr<Member>> members;
  int64_t started_at = 0;  // first launch
  bool gang_formed = false;
  bool removing = false;  // not in the desired spec any more
  int failures_in_row = 0;
  int64_t next_start_at = 0;

  int ReadyMembers() const {
    int ready = 0;
    for (const auto& member : members) ready += (!member->draining && member->ready) ? 1 : 0;
    return ready;
  }
};

int64_t Micros(absl::Duration duration) { return absl::ToInt64Microseconds(duration); }

void AppendToLog(const std::string& path, const std::string& line) {
  std::ofstream log(path, std::ios::app);
  log << "[tandem " << absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone())
      << "] " << line << "\n";
}

std::string EpochFromHealth(const std::string& body) {
  try {
    nlohmann::json value = nlohmann::json::parse(body);
    if (!value.is_object() || !value.contains("epoch")) return "";
    const nlohmann::json& epoch = value["epoch"];
    if (epoch.is_string()) return epoch.get<std::string>();
    return epoch.dump();
  } catch (const nlohmann::json::exception&) {
    return "";
  }
}

absl::Status MakeDirectories(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      partial = path.substr(0, i);
      if (::mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::PermissionDeniedError(
            absl::StrCat("cannot create directory '", partial, "': ", std::strerror(errno)));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

struct Orchestrator::Impl {
  OrchestratorOptions options;
  Env& env = Env::Default();

  mutable absl::Mutex mu;
  absl::CondVar wake_loop;
  DeploymentSpec spec ABSL_GUARDED_BY(mu);
  DeploymentSpec good_spec ABSL_GUARDED_BY(mu);
  int generation ABSL_GUARDED_BY(mu) = 1;
  int max_generation ABSL_GUARDED_BY(mu) = 1;
  int good_generation ABSL_GUARDED_BY(mu) = 0;
  std::vector<Unit> units ABSL_GUARDED_BY(mu);
  UpdateStatus update ABSL_GUARDED_BY(mu);
  std::string update_note ABSL_GUARDED_BY(mu);  // "supersedes generation N; " or empty
  bool started ABSL_GUARDED_BY(mu) = false;
  bool up ABSL_GUARDED_BY(mu) = false;
  bool failed ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
  bool wake ABSL_GUARDED_BY(mu) = false;
  std::string message ABSL_GUARDED_BY(mu);
  int64_t next_member_id ABSL_GUARDED_BY(mu) = 1;
  std::map<std::string, int> next_ordinal ABSL_GUARDED_BY(mu);
  // The first planner's port, picked when first needed: the router is told it (--planner, for
  // its dashboard) before the planner, which starts after the router, is running.
  int planner_port ABSL_GUARDED_BY(mu) = 0;
  // Groups whose leader was reaped but where something may still run (a child it started):
  // SIGKILLed every tick until empty (or given up on after stop_timeout).
  std::map<pid_t, int64_t> lingering_groups ABSL_GUARDED_BY(mu);
  std::thread loop;

  int64_t Now() { return env.NowMicros(); }

  void Loop() {
    absl::MutexLock lock(&mu);
    while (!stopped) {
      Tick();
      if (stopped) break;
      if (!wake) wake_loop.WaitWithTimeout(&mu, options.tick);
      wake = false;
    }
  }

  void Wake() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    wake = true;
    wake_loop.SignalAll();
  }

  Unit* FindUnit(const std::string& name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (Unit& unit : units) {
      if (unit.spec.name == name) return &unit;
    }
    return nullptr;
  }

  Unit* UnitOfRole(const std::string& role) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (Unit& unit : units) {
      if (std::find(unit.spec.roles.begin(), unit.spec.roles.end(), role) !=
          unit.spec.roles.end()) {
        return &unit;
      }
    }
    return nullptr;
  }

  // ---- launching --------------------------------------------------------------------------

  std::string RouterUrl() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Role* router = spec.FirstOfKind(RoleKind::kRouter);
    if (router == nullptr) return "";
    Unit* unit = UnitOfRole(router->name);
    if (unit == nullptr) return "";
    std::string fallback;
    for (const auto& member : unit->members) {
      if (member->draining) continue;
      for (const Instance& instance : member->instances) {
        for (const Proc& proc : instance.procs) {
          if (proc.ready) return absl::StrCat("http://", kLoopback, ":", proc.port);
          if (fallback.empty() && proc.port > 0) {
            fallback = absl::StrCat("http://", kLoopback, ":", proc.port);
          }
        }
      }
    }
    return fallback;
  }

  // Starts every process of `instance`; on failure the instance is left crashed with backoff.
  void LaunchInstance(Member& member, Instance& instance) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const Role* role = nullptr;
    for (const Role& candidate : member.roles) {
      if (candidate.name == instance.role) role = &candidate;
    }
    const std::string router_url = RouterUrl();
    std::string planner_url;
    if (role->kind == RoleKind::kRouter && spec.FirstOfKind(RoleKind::kPlanner) != nullptr) {
      absl::StatusOr<int> port = PlannerPort();
      if (port.ok()) planner_url = absl::StrCat("http://", kLoopback, ":", *port);
    }
    const std::string leader =
        absl::StrCat(kLoopback, ":", instance.procs.empty() ? 0 : instance.procs[0].port);
    for (Proc& proc : instance.procs) {
      InstanceContext context;
      context.listen = absl::StrCat(kLoopback, ":", proc.port);
      if (IsEngineKind(role->kind)) {
        context.advertise = context.listen;
        context.kv_listen = absl::StrCat(kLoopback, ":", proc.kv_port);
      }
      if (role->kind != RoleKind::kRouter) context.router_url = router_url;
      context.planner_url = planner_url;
      context.node_rank = absl::StrCat(proc.rank);
      context.leader = leader;
      if (role->kind == RoleKind::kPlanner) {
        context.connector = "local";
        context.orchestrator_url = options.control_url;
        context.scale_targets = LocalScaleTargets(spec);
      }
      std::vector<std::string> argv = RoleCommandLine(spec, *role, context);
      argv.erase(argv.begin());
      argv.insert(argv.begin(), options.command.begin(), options.command.end());
      SpawnOptions spawn;
      spawn.argv = argv;
      spawn.env = role->env;
      spawn.env["TANDEM_DEPLOYMENT"] = spec.name;
      spawn.env["TANDEM_ROLE"] = role->name;
      spawn.env["TANDEM_INSTANCE"] = instance.Id();
      spawn.env["TANDEM_NODE_RANK"] = absl::StrCat(proc.rank);
      spawn.env["TANDEM_RESTARTS"] = absl::StrCat(instance.restarts);
      if (!options.cluster_token.empty() && !role->env.contains("TANDEM_CLUSTER_TOKEN")) {
        spawn.env["TANDEM_CLUSTER_TOKEN"] = options.cluster_token;
      }
      if (role->kind == RoleKind::kPlanner && !options.control_token.empty()) {
        spawn.env["TANDEM_ORCHESTRATOR_TOKEN"] = options.control_token;
      }
      spawn.log_path = proc.log_path;
      AppendToLog(proc.log_path,
                  absl::StrCat("starting ", instance.Id(), " rank ", proc.rank, " (restart ",
                               instance.restarts, "): ", absl::StrJoin(argv, " ")));
      absl::StatusOr<pid_t> pid = SpawnProcess(spawn);
      if (!pid.ok()) {
        AppendToLog(proc.log_path, std::string(pid.status().message()));
        LogError("cannot start process",
                 {{"instance", instance.Id()}, {"error", std::string(pid.status().message())}});
        MarkCrashed(member, instance, std::string(pid.status().message()));
        return;
      }
      proc.pid = *pid;
      proc.ready = false;
      proc.epoch.clear();
    }
    LogInfo("started", {{"instance", instance.Id()},
                        {"pid", instance.procs.empty() ? 0 : instance.procs[0].pid},
                        {"address", leader},
                        {"restart", instance.restarts}});
  }

  absl::StatusOr<int> PlannerPort() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (planner_port == 0) {
      TANDEM_ASSIGN_OR_RETURN(planner_port, PickFreePort());
    }
    return planner_port;
  }

  absl::Status LaunchMember(Unit& unit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto member = std::make_unique<Member>();
    member->id = next_member_id++;
    member->key = unit.spec.template_key;
    member->generation = generation;
    member->pending_since = Now();
    for (const std::string& role_name : unit.spec.roles) {
      const Role* role = spec.FindRole(role_name);
      if (role == nullptr) continue;
      member->roles.push_back(*role);
    }
    for (const Role& role : member->roles) {
      const int count = unit.spec.is_group ? role.replicas : 1;
      for (int i = 0; i < count; ++i) {
        Instance instance;
        instance.role = role.name;
        instance.ordinal = next_ordinal[role.name]++;
        for (int rank = 0; rank < role.nodes_per_instance; ++rank) {
          Proc proc;
          proc.rank = rank;
          if (role.kind == RoleKind::kRouter && options.use_router_port && instance.ordinal == 0 &&
              rank == 0 && role.port > 0) {
            proc.port = role.port;
          } else if (role.kind == RoleKind::kPlanner && instance.ordinal == 0 && rank == 0) {
            TANDEM_ASSIGN_OR_RETURN(proc.port, PlannerPort());
          } else {
            TANDEM_ASSIGN_OR_RETURN(proc.port, PickFreePort());
          }
          if (IsEngineKind(role.kind)) {
            TANDEM_ASSIGN_OR_RETURN(proc.kv_port, PickFreePort());
          }
          proc.log_path = absl::StrCat(
              options.run_dir, "/logs/", role.name, "-", instance.ordinal,
              role.nodes_per_instance > 1 ? absl::StrCat(".rank", rank) : std::string(), ".log");
          instance.procs.push_back(std::move(proc));
        }
        member->instances.push_back(std::move(instance));
      }
    }
    if (unit.started_at == 0) unit.started_at = Now();
    Member& added = *member;
    unit.members.push_back(std::move(member));
    for (Instance& instance : added.instances) LaunchInstance(added, instance);
    return absl::OkStatus();
  }

  void MarkCrashed(Member& member, Instance& instance, const std::string& how)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    instance.last_exit = how;
    if (member.draining || instance.crashed) return;
    // A TP group works only whole: its other processes go too, and all restart together.
    for (Proc& proc : instance.procs) {
      proc.ready = false;
      if (proc.pid != 0) SignalProcessGroup(proc.pid, SIGKILL);
    }
    instance.crashed = true;
    instance.ready_since = 0;
    ++instance.crashes_in_row;
    const absl::Duration delay = RestartBackoff(instance.crashes_in_row, options.restart_backoff,
                                                options.restart_backoff_cap);
    instance.restart_at = Now() + Micros(delay);
    if (member.ready) {
      member.ready = false;
      member.pending_since = Now();
    }
    LogWarn("process ended; restarting after backoff",
            {{"instance", instance.Id()},
             {"how", how},
             {"backoff_ms", absl::ToInt64Milliseconds(delay)}});
    for (const Proc& proc : instance.procs) {
      AppendToLog(proc.log_path, absl::StrCat(instance.Id(), ": ", how, "; restarting in ",
                                              absl::FormatDuration(delay)));
    }
  }

  // ---- stopping ---------------------------------------------------------------------------

  // Drain protocol: SIGTERM, which every Tandem process (as Kubernetes does) takes as "stop
  // taking work, finish what is in flight, then exit"; SIGKILL if it is still there
  // drain_timeout + stop_timeout later. (POST /admin/drain on a worker only stops it taking work
  // and leaves it running, for callers that decide themselves when it goes.)
  void StartDrain(Member& member) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (member.draining) return;
    member.draining = true;
    member.ready = false;
    for (Instance& instance : member.instances) {
      for (Proc& proc : instance.procs) {
        if (proc.pid == 0) continue;
        SignalProcessGroup(proc.pid, SIGTERM);
      }
      LogInfo("draining", {{"instance", instance.Id()}});
    }
    member.term_at = Now() + Micros(options.drain_timeout);
    member.kill_at = member.term_at + Micros(options.stop_timeout);
  }

  void StopMember(Member& member) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (member.draining && member.term_sent) return;
    member.draining = true;
    member.ready = false;
    member.term_sent = true;
    member.kill_at = Now() + Micros(options.stop_timeout);
    for (Instance& instance : member.instances) {
      for (Proc& proc : instance.procs) {
        if (proc.pid != 0) SignalProcessGroup(proc.pid, SIGTERM);
      }
      LogInfo("stopping", {{"instance", instance.Id()}});
    }
  }

  Member* FindMember(Unit& unit, int64_t id) {
    for (auto& member : unit.members) {
      if (member->id == id) return member.get();
    }
    return nullptr;
  }

  // ---- the loop ---------------------------------------------------------------------------

  void ReapExited() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<pid_t> pids;
    for (Unit& unit : units) {
      for (auto& member : unit.members) {
        for (Instance& instance : member->instances) {
          for (Proc& proc : instance.procs) {
            if (proc.pid != 0) pids.push_back(proc.pid);
          }
        }
      }
    }
    while (true) {
      ExitedChild exited = ReapOne(pids);
      if (exited.pid == 0) return;
      pids.erase(std::remove(pids.begin(), pids.end(), exited.pid), pids.end());
      for (Unit& unit : units) {
        for (auto& member : unit.members) {
          for (Instance& instance : member->instances) {
            for (Proc& proc : instance.procs) {
              if (proc.pid != exited.pid) continue;
              proc.pid = 0;
              proc.ready = false;
              // Whatever the process left behind in its group goes with it.
              if (SignalProcessGroup(exited.pid, SIGKILL)) {
                lingering_groups[exited.pid] = Now() + Micros(options.stop_timeout);
              }
              const std::string how = DescribeWaitStatus(exited.wait_status);
              if (member->draining) {
                instance.last_exit = how;
                LogInfo("stopped", {{"instance", instance.Id()}, {"how", how}});
                AppendToLog(proc.log_path, absl::StrCat(instance.Id(), ": stopped (", how, ")"));
              } else {
                MarkCrashed(*member, instance, how);
              }
            }
          }
        }
      }
    }
  }

  void KillLingeringGroups() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t now = Now();
    for (auto it = lingering_groups.begin(); it != lingering_groups.end();) {
      if (!ProcessGroupExists(it->first)) {
        it = lingering_groups.erase(it);
      } else if (now > it->second) {
        LogWarn("process group still exists after SIGKILL (unreaped zombie?)",
                {{"pgid", it->first}});
        it = lingering_groups.erase(it);
      } else {
        SignalProcessGroup(it->first, SIGKILL);
        ++it;
      }
    }
  }

  void RestartCrashed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t now = Now();
    for (Unit& unit : units) {
      for (auto& member : unit.members) {
        if (member->draining) continue;
        for (Instance& instance : member->instances) {
          if (!instance.crashed || now < instance.restart_at || instance.Running()) continue;
          instance.crashed = false;
          ++instance.restarts;
          LaunchInstance(*member, instance);
        }
      }
    }
  }

  void Probe() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t now = Now();
    for (Unit& unit : units) {
      for (auto& member : unit.members) {
        if (member->draining) continue;
        for (Instance& instance : member->instances) {
          if (instance.crashed) continue;
          for (Proc& proc : instance.procs) {
            if (proc.pid == 0) continue;
            const std::string address = absl::StrCat(kLoopback, ":", proc.port);
            absl::StatusOr<internal::HttpCallResult> answer = internal::HttpCall(
                {.address = address, .path = "/ready", .timeout = options.probe_timeout});
            const bool ready = answer.ok() && answer->status == 200;
            if (ready && !proc.ready) {
              absl::StatusOr<internal::HttpCallResult> health = internal::HttpCall(
                  {.address = address, .path = "/health", .timeout = options.probe_timeout});
              if (health.ok() && health->status == 200) proc.epoch = EpochFromHealth(health->body);
            }
            proc.ready = ready;
          }
          if (instance.Ready()) {
            if (instance.ready_since == 0) instance.ready_since = now;
            if (now - instance.ready_since >= Micros(options.stable_after)) {
              instance.crashes_in_row = 0;
            }
          } else {
            instance.ready_since = 0;
          }
        }
        const bool ready = member->AllReady();
        if (ready && !member->ready) {
          std::vector<std::string> ids;
          for (const Instance& instance : member->instances) ids.push_back(instance.Id());
          LogInfo("ready", {{"unit", unit.spec.name}, {"instances", absl::StrJoin(ids, ",")}});
        } else if (!ready && member->ready) {
          member->pending_since = now;
        }
        member->ready = ready;
      }
    }
  }

  void ProgressDrains() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t now = Now();
    for (Unit& unit : units) {
      for (auto& member : unit.members) {
        if (!member->draining) continue;
        if (!member->term_sent && now >= member->term_at) {
          for (Instance& instance : member->instances) {
            for (Proc& proc : instance.procs) {
              if (proc.pid != 0) SignalProcessGroup(proc.pid, SIGTERM);
            }
          }
          member->term_sent = true;
          member->kill_at = now + Micros(options.stop_timeout);
        } else if (member->term_sent && now >= member->kill_at) {
          for (Instance& instance : member->instances) {
            for (Proc& proc : instance.procs) {
              if (proc.pid != 0) SignalProcessGroup(proc.pid, SIGKILL);
            }
          }
        }
      }
      unit.members.erase(std::remove_if(unit.members.begin(), unit.members.end(),
                                        [](const std::unique_ptr<Member>& member) {
                                          return member->draining && !member->Running();
                                        }),
                         unit.members.end());
    }
    units.erase(
        std::remove_if(units.begin(), units.end(),
                       [](const Unit& unit) { return unit.removing && unit.members.empty(); }),
        units.end());
  }

  bool DependenciesReady(const Unit& unit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const std::string& role : unit.spec.depends_on) {
      Unit* dependency = UnitOfRole(role);
      if (dependency == nullptr) continue;
      const int needed =
          std::min(std::max(1, dependency->spec.min_available), dependency->spec.replicas);
      if (dependency->ReadyMembers() < needed) return false;
    }
    return true;
  }

  std::string LogHint(const Unit& unit) {
    std::vector<std::string> paths;
    std::string last_exit;
    for (const auto& member : unit.members) {
      for (const Instance& instance : member->instances) {
        if (!instance.last_exit.empty()) last_exit = instance.last_exit;
        for (const Proc& proc : instance.procs) paths.push_back(proc.log_path);
      }
    }
    if (paths.size() > 3) paths.resize(3);
    std::string hint;
    if (!last_exit.empty()) absl::StrAppend(&hint, "; last exit: ", last_exit);
    if (!paths.empty()) absl::StrAppend(&hint, "; see ", absl::StrJoin(paths, ", "));
    return hint;
  }

  std::string UnitLabel(const Unit& unit) {
    return absl::StrCat(unit.spec.is_group ? "scaling group '" : "role '", unit.spec.name, "'");
  }

  void GangFailure(Unit& unit) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int processes = 0;
    for (auto& member : unit.members) {
      for (const Instance& instance : member->instances) {
        for (const Proc& proc : instance.procs) processes += proc.pid != 0 ? 1 : 0;
      }
    }
    message = absl::StrCat(UnitLabel(unit), ": ", unit.ReadyMembers(), " of the ",
                           unit.spec.min_available, " instances its gang needs (minAvailable) ",
                           "became ready within ", unit.spec.ready_timeout_seconds,
                           "s (readyTimeoutSeconds); rolled the gang back (", processes,
                           " processes stopped) and stopped the deployment", LogHint(unit));
    LogError("gang not ready in time", {{"unit", unit.spec.name}, {"message", message}});
    for (auto& member : unit.members) StopMember(*member);
    failed = true;
    stopping = true;
  }

  // Reverts the desired state to the last spec the deployment fully reached.
  void UpdateFailure(Unit& unit, Member& member, const std::string& what)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<std::string> ids;
    for (const Instance& instance : member.instances) ids.push_back(instance.Id());
    update.state = "failed";
    update.message =
        absl::StrCat(UnitLabel(unit), ": ", absl::StrJoin(ids, ","), " ", what, " within ",
                     unit.spec.ready_timeout_seconds, "s (readyTimeoutSeconds)", LogHint(unit),
                     "; the update stopped and the deployment returns to generation ",
                     good_generation, " (its instances kept serving)");
    LogError("update failed", {{"generation", update.generation}, {"message", update.message}});
    StopMember(member);
    generation = good_generation;
    spec = good_spec;
    RebuildUnits();
  }

  void RebuildUnits() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<Unit> rebuilt;
    for (UnitSpec& unit_spec : BuildUnits(spec)) {
      auto existing = std::find_if(units.begin(), units.end(), [&](const Unit& unit) {
        return unit.spec.name == unit_spec.name;
      });
      if (existing != units.end()) {
        Unit unit = std::move(*existing);
        units.erase(existing);
        unit.spec = std::move(unit_spec);
        unit.removing = false;
        rebuilt.push_back(std::move(unit));
      } else {
        Unit unit;
        unit.spec = std::move(unit_spec);
        rebuilt.push_back(std::move(unit));
      }
    }
    for (Unit& unit : units) {
      if (unit.members.empty()) continue;
      unit.removing = true;
      unit.spec.replicas = 0;
      unit.spec.min_available = 0;
      rebuilt.push_back(std::move(unit));
    }
    units = std::move(rebuilt);
  }

  bool UnitConverged(const Unit& unit) {
    if (unit.removing) return false;
    int members = 0;
    for (const auto& member : unit.members) {
      if (member->draining || !member->ready || member->key != unit.spec.template_key) return false;
      ++members;
    }
    return members == unit.spec.replicas;
  }

  void Reconcile() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const int64_t now = Now();
    for (Unit& unit : units) {
      // Members that are not ready in time.
      for (auto& member : unit.members) {
        if (member->draining || member->ready) continue;
        if (now - member->pending_since < int64_t{unit.spec.ready_timeout_seconds} * 1'000'000) {
          continue;
        }
        if (unit.removing) {
          StopMember(*member);
        } else if (!unit.gang_formed && !up) {
          GangFailure(unit);
          return;
        } else if (update.state == "in_progress" && member->generation == update.generation) {
          UpdateFailure(unit, *member, "did not become ready");
          return;  // units were rebuilt; continue on the next tick
        } else {
          // Steady state (a restart or a scale-up that does not come up): roll this member
          // back whole and try a fresh one after a backoff.
          ++unit.failures_in_row;
          unit.next_start_at =
              now + Micros(RestartBackoff(unit.failures_in_row, options.restart_backoff,
                                          options.restart_backoff_cap));
          LogWarn("instance not ready in time; replacing it",
                  {{"unit", unit.spec.name}, {"member", member->id}});
          StopMember(*member);
        }
      }
      const bool dependencies_ready = DependenciesReady(unit);
      std::vector<MemberView> views;
      for (const auto& member : unit.members) {
        views.push_back({member->id, member->key, member->Phase()});
      }
      UnitPlan plan = PlanUnit(unit.spec, views);
      for (int64_t id : plan.stop) {
        if (Member* member = FindMember(unit, id)) StopMember(*member);
      }
      for (int64_t id : plan.drain) {
        if (Member* member = FindMember(unit, id)) StartDrain(*member);
      }
      if (plan.start > 0 && (dependencies_ready || !unit.members.empty()) &&
          now >= unit.next_start_at) {
        for (int i = 0; i < plan.start; ++i) {
          absl::Status launched = LaunchMember(unit);
          if (!launched.ok()) {
            LogError("cannot start a member",
                     {{"unit", unit.spec.name}, {"error", std::string(launched.message())}});
            break;
          }
        }
      }
      const int ready = unit.ReadyMembers();
      if (ready > 0) unit.failures_in_row = 0;
      if (!unit.gang_formed && ready >= unit.spec.min_available &&
          (unit.spec.min_available > 0 || unit.started_at != 0 || unit.spec.replicas == 0)) {
        unit.gang_formed = true;
      }
    }
    if (!up) {
      bool all_up = true;
      for (Unit& unit : units) {
        const bool timed_out =
            unit.started_at != 0 &&
            now - unit.started_at >= int64_t{unit.spec.ready_timeout_seconds} * 1'000'000;
        if (!unit.gang_formed || !(UnitConverged(unit) || timed_out)) all_up = false;
      }
      if (all_up) {
        up = true;
        message.clear();
        if (update.state.empty() || update.state == "none") {
          good_spec = spec;
          good_generation = generation;
        }
        LogInfo("deployment up", {{"name", spec.name}});
      }
    }
    if (update.state == "in_progress") {
      bool converged = true;
      for (Unit& unit : units) converged = converged && UnitConverged(unit);
      if (converged) {
        update.state = "complete";
        update.message = absl::StrCat(update_note, "every instance runs generation ", generation);
        good_spec = spec;
        good_generation = generation;
        LogInfo("update complete", {{"generation", generation}});
      }
    }
  }

  void StopInOrder() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (auto unit = units.rbegin(); unit != units.rend(); ++unit) {
      if (unit->members.empty()) continue;
      for (auto& member : unit->members) {
        if (member->draining) continue;
        if (member->ready) {
          StartDrain(*member);
        } else {
          StopMember(*member);
        }
      }
      return;  // the units before it stop once it is gone (reverse startup order)
    }
    if (!lingering_groups.empty()) return;
    stopped = true;
    LogInfo("deployment stopped", {{"name", spec.name}});
  }

  void Tick() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    ReapExited();
    KillLingeringGroups();
    if (!stopping) RestartCrashed();
    Probe();
    ProgressDrains();
    if (!stopping) Reconcile();
    if (stopping) {
      ProgressDrains();
      StopInOrder();
    }
  }

  // ---- status -----------------------------------------------------------------------------

  DeploymentStatus BuildStatus() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    DeploymentStatus status;
    status.name = spec.name;
    status.phase = stopped    ? (failed ? "failed" : "stopped")
                   : failed   ? "failed"
                   : stopping ? "stopping"
                   : up       ? "running"
                   : started  ? "starting"
                              : "created";
    status.message = message;
    status.spec_path = options.spec_path;
    status.generation = generation;
    status.good_generation = good_generation;
    status.update = update;
    if (status.update.state.empty()) status.update.state = "none";
    for (const Unit& unit : units) {
      UnitStatus unit_status;
      unit_status.name = unit.spec.name;
      unit_status.group = unit.spec.is_group;
      unit_status.desired = unit.spec.replicas;
      unit_status.ready = unit.ReadyMembers();
      unit_status.min_available = unit.spec.min_available;
      for (const auto& member : unit.members) unit_status.members += member->draining ? 0 : 1;
      status.units.push_back(unit_status);
      for (const std::string& role_name : unit.spec.roles) {
        RoleStatus role;
        role.name = role_name;
        role.unit = unit.spec.name;
        const Role* role_spec = spec.FindRole(role_name);
        const int per_member = unit.spec.is_group && role_spec != nullptr ? role_spec->replicas : 1;
        role.kind = role_spec != nullptr ? RoleKindName(role_spec->kind) : "";
        role.desired = unit.spec.replicas * per_member;
        role.min_available = unit.spec.min_available * per_member;
        for (const auto& member : unit.members) {
          for (const Instance& instance : member->instances) {
            if (instance.role != role_name) continue;
            InstanceStatus out;
            out.id = instance.Id();
            out.role = instance.role;
            out.ordinal = instance.ordinal;
            out.member = member->id;
            out.generation = member->generation;
            out.restarts = instance.restarts;
            out.last_exit = instance.last_exit;
            const bool ready = !member->draining && instance.Ready();
            out.state = member->draining   ? (member->term_sent ? "stopping" : "draining")
                        : instance.crashed ? "restarting"
                        : ready            ? "ready"
                                           : "starting";
            role.ready += ready ? 1 : 0;
            for (const Proc& proc : instance.procs) {
              ProcessStatus process;
              process.rank = proc.rank;
              process.pid = proc.pid;
              process.address = absl::StrCat(kLoopback, ":", proc.port);
              if (proc.kv_port > 0) process.kv_address = absl::StrCat(kLoopback, ":", proc.kv_port);
              process.log_path = proc.log_path;
              process.ready = proc.ready;
              process.epoch = proc.epoch;
              out.processes.push_back(std::move(process));
            }
            role.instances.push_back(std::move(out));
          }
        }
        status.roles.push_back(std::move(role));
      }
    }
    return status;
  }
};

Orchestrator::Orchestrator(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<Orchestrator>> Orchestrator::Create(DeploymentSpec spec,
                                                                   OrchestratorOptions options) {
  if (options.command.empty()) options.command = {CurrentExecutable()};
  if (options.run_dir.empty()) options.run_dir = ".";
  TANDEM_RETURN_IF_ERROR(MakeDirectories(options.run_dir + "/logs"));
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  {
    absl::MutexLock lock(&impl->mu);
    impl->spec = std::move(spec);
    impl->good_spec = impl->spec;
    impl->RebuildUnits();
  }
  return std::unique_ptr<Orchestrator>(new Orchestrator(std::move(impl)));
}

Orchestrator::~Orchestrator() { Down(); }

absl::Status Orchestrator::Start() {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->started) return absl::FailedPreconditionError("the orchestrator was already started");
  impl_->started = true;
  LogInfo("deployment starting", {{"name", impl_->spec.name}, {"run_dir", impl_->options.run_dir}});
  impl_->loop = std::thread([impl = impl_.get()] { impl->Loop(); });
  return absl::OkStatus();
}

absl::Status Orchestrator::WaitUntilUp() {
  absl::MutexLock lock(&impl_->mu);
  Impl* impl = impl_.get();
  auto done = [impl]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl->mu) {
    return impl->up || impl->failed || impl->stopping || !impl->started;
  };
  impl_->mu.Await(absl::Condition(&done));
  if (impl_->failed) return absl::DeadlineExceededError(impl_->message);
  if (!impl_->up) return absl::CancelledError("the deployment was stopped before it was up");
  return absl::OkStatus();
}

absl::Status Orchestrator::Scale(const std::string& target, int replicas) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->stopping) {
    return absl::FailedPreconditionError("the deployment is stopping; nothing can be scaled");
  }
  Unit* unit = impl_->FindUnit(target);
  if (unit == nullptr || unit->removing) {
    if (const Role* role = impl_->spec.FindRole(target); role && !role->scaling_group.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("role '", target, "' is in scaling group '",
                                                     role->scaling_group,
                                                     "'; scale the group instead"));
    }
    std::vector<std::string> names;
    for (const Unit& candidate : impl_->units) {
      if (!candidate.removing) names.push_back(candidate.spec.name);
    }
    return absl::NotFoundError(absl::StrCat("no role or scaling group '", target,
                                            "' in deployment '", impl_->spec.name,
                                            "'; allowed: ", absl::StrJoin(names, ", ")));
  }
  if (replicas < unit->spec.min_available || replicas > 10000) {
    return absl::InvalidArgumentError(absl::StrCat(
        "replicas ", replicas, " for '", target, "': allowed ", unit->spec.min_available,
        "..10000 (not below minAvailable, which the gang needs)"));
  }
  if (const Role* role = impl_->spec.FindRole(target);
      role != nullptr && role->kind == RoleKind::kPlanner && replicas > 1) {
    return absl::InvalidArgumentError("the planner runs 0 or 1 instances");
  }
  auto set_replicas = [&](DeploymentSpec& spec) {
    for (Role& role : spec.roles) {
      if (role.name == target && !unit->spec.is_group) role.replicas = replicas;
    }
    for (ScalingGroup& group : spec.scaling_groups) {
      if (group.name == target && unit->spec.is_group) group.replicas = replicas;
    }
  };
  set_replicas(impl_->spec);
  set_replicas(impl_->good_spec);
  LogInfo("scale", {{"unit", target}, {"from", unit->spec.replicas}, {"to", replicas}});
  unit->spec.replicas = replicas;
  impl_->Wake();
  return absl::OkStatus();
}

absl::StatusOr<int> Orchestrator::Apply(DeploymentSpec spec) {
  absl::MutexLock lock(&impl_->mu);
  if (impl_->stopping) {
    return absl::FailedPreconditionError("the deployment is stopping; nothing can be applied");
  }
  if (spec.name != impl_->spec.name) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the spec names deployment '", spec.name, "' but '", impl_->spec.name,
        "' is running; a deployment cannot be renamed in place (`tandem down`, then `tandem up`)"));
  }
  for (const UnitSpec& unit : BuildUnits(spec)) {
    Unit* running = impl_->FindUnit(unit.name);
    if (running != nullptr && !running->removing &&
        (running->spec.is_group != unit.is_group || running->spec.roles != unit.roles)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'", unit.name, "' changes which roles it groups (",
          absl::StrJoin(running->spec.roles, ","), " -> ", absl::StrJoin(unit.roles, ","),
          "); scaling-group membership cannot change in place (`tandem down`, then `tandem up`)"));
    }
  }
  std::vector<std::string> changes = DiffSpecs(impl_->spec, spec);
  std::string superseded;
  if (impl_->update.state == "in_progress") {
    superseded = absl::StrCat("supersedes generation ", impl_->update.generation, "; ");
    LogInfo("update superseded", {{"generation", impl_->update.generation}});
  }
  const int generation = ++impl_->max_generation;
  impl_->generation = generation;
  impl_->spec = std::move(spec);
  impl_->RebuildUnits();
  impl_->update = UpdateStatus{};
  impl_->update_note = superseded;
  impl_->update.generation = generation;
  impl_->update.changes = changes;
  if (changes.empty()) {
    impl_->update.state = "complete";
    impl_->update.message = superseded + "nothing to change";
  } else {
    impl_->update.state = "in_progress";
    impl_->update.message = superseded + absl::StrJoin(changes, "; ");
  }
  LogInfo("update", {{"generation", generation}, {"changes", absl::StrJoin(changes, "; ")}});
  impl_->Wake();
  return generation;
}

void Orchestrator::RequestDown() {
  absl::MutexLock lock(&impl_->mu);
  if (!impl_->stopping) LogInfo("deployment stopping", {{"name", impl_->spec.name}});
  impl_->stopping = true;
  if (!impl_->started) impl_->stopped = true;
  impl_->Wake();
}

absl::Status Orchestrator::WaitUntilStopped(absl::Duration timeout) {
  absl::MutexLock lock(&impl_->mu);
  Impl* impl = impl_.get();
  auto done = [impl]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(impl->mu) { return impl->stopped; };
  if (!impl_->mu.AwaitWithTimeout(absl::Condition(&done), timeout)) {
    return absl::DeadlineExceededError("the deployment did not stop in time");
  }
  return absl::OkStatus();
}

void Orchestrator::Down() {
  RequestDown();
  WaitUntilStopped().IgnoreError();
  if (impl_->loop.joinable()) impl_->loop.join();
}

DeploymentStatus Orchestrator::Status() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->BuildStatus();
}

std::vector<pid_t> Orchestrator::ProcessGroups() const {
  absl::MutexLock lock(&impl_->mu);
  std::vector<pid_t> groups;
  for (const Unit& unit : impl_->units) {
    for (const auto& member : unit.members) {
      for (const Instance& instance : member->instances) {
        for (const Proc& proc : instance.procs) {
          if (proc.pid != 0) groups.push_back(proc.pid);
        }
      }
    }
  }
  for (const auto& [group, deadline] : impl_->lingering_groups) groups.push_back(group);
  return groups;
}

}  // namespace tandem::deploy
