// `tandem up SPEC` runs a deployment on this machine (the supervisor, in the foreground or with
// --detach); `tandem status`, `logs ROLE[/i]`, `scale TARGET N`, `apply SPEC` and `down` find it
// through RUN_DIR/<name>/state.json and talk to its control API (docs/deploy-spec.md, "Running
// locally").
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <dirent.h>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "core/env.h"
#include "deploy/orchestrator.h"
#include "deploy/process.h"
#include "deploy/spec.h"
#include "deploy/state.h"
#include "deploy/supervisor.h"

namespace tandem::cli {
namespace {

using deploy::DeploymentStatus;

struct Target {
  std::string run_dir = "run";
  std::string name;
};

void AddTargetOptions(CLI::App* command, const std::shared_ptr<Target>& target) {
  command->add_option("--run-dir", target->run_dir,
                      "Directory holding running deployments (<dir>/<name>/state.json, logs)");
  command->add_option("--name", target->name,
                      "Deployment name (needed only when several run under --run-dir)");
}

absl::StatusOr<deploy::SupervisorClient> Connect(const Target& target) {
  absl::StatusOr<deploy::SupervisorClient> client =
      deploy::SupervisorClient::Connect(target.run_dir, target.name);
  if (!client.ok()) return client.status();
  if (!client->SupervisorAlive()) {
    return absl::UnavailableError(absl::StrCat(
        "deployment '", client->state().name, "': its supervisor (pid ",
        client->state().supervisor_pid, ") is not running; `tandem down` stops what it left"));
  }
  return client;
}

// ---- up -------------------------------------------------------------------------------------

struct UpOptions {
  std::string spec_path;
  bool detach = false;
  std::string role_command;
  bool random_ports = false;
  double drain_timeout_seconds = 120;
};

void PrintUp(const DeploymentStatus& status, const std::string& run_dir, bool foreground) {
  std::printf("deployment '%s' is up\n", status.name.c_str());
  for (const deploy::RoleStatus& role : status.roles) {
    if (role.kind == "router" && !role.instances.empty()) {
      std::printf("  router: http://%s\n", role.instances[0].processes[0].address.c_str());
    }
  }
  std::printf("\n%s\n", deploy::FormatStatus(status).c_str());
  std::printf("logs in %s/logs; `tandem status`, `tandem logs ROLE`, `tandem down`%s\n",
              run_dir.c_str(), foreground ? "; Ctrl-C stops it" : "");
  std::fflush(stdout);
}

// Runs the supervisor until down (signal or `tandem down`). `report_fd` (>= 0 with --detach)
// receives one line once the deployment is up or failed: "OK ..." or "ERR message".
int RunSupervisor(CLI::App* command, deploy::DeploymentSpec spec, const UpOptions& options,
                  const Target& target, int report_fd) {
  auto report = [report_fd](const std::string& line) {
    if (report_fd < 0) return;
    std::string text = line + "\n";
    (void)!::write(report_fd, text.data(), text.size());
  };
  // Signals are taken synchronously below; block them before any thread exists so that every
  // thread inherits the mask (the children get a clean mask from SpawnProcess).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  deploy::OrchestratorOptions orchestrator_options;
  if (!options.role_command.empty()) {
    orchestrator_options.command = absl::StrSplit(options.role_command, ' ', absl::SkipEmpty());
  }
  orchestrator_options.use_router_port = !options.random_ports;
  orchestrator_options.drain_timeout = absl::Seconds(options.drain_timeout_seconds);
  absl::StatusOr<std::unique_ptr<deploy::Supervisor>> supervisor = deploy::Supervisor::Start(
      std::move(spec), {.run_root = target.run_dir, .spec_path = options.spec_path},
      orchestrator_options);
  if (!supervisor.ok()) {
    report("ERR " + std::string(supervisor.status().message()));
    return ReportError(command, supervisor.status());
  }
  const std::string run_dir = (*supervisor)->state().run_dir;
  bool reported = false;
  bool failed = false;
  while (true) {
    timespec wait{0, 200'000'000};
    int signal = ::sigtimedwait(&signals, nullptr, &wait);
    if (signal > 0) {
      std::fprintf(stderr, "tandem up: %s: stopping the deployment (drain, then stop)\n",
                   ::strsignal(signal));
      break;
    }
    if ((*supervisor)->down_requested()) break;
    (*supervisor)->RefreshStateFile();
    DeploymentStatus status = (*supervisor)->orchestrator().Status();
    if (!reported && status.phase == "running") {
      reported = true;
      report(absl::StrCat("OK ", (*supervisor)->state().control_url));
      PrintUp(status, run_dir, report_fd < 0);
    }
    if (status.phase == "failed") {
      failed = true;
      report("ERR " + status.message);
      std::fprintf(stderr, "tandem up: %s\n", status.message.c_str());
      break;
    }
  }
  (*supervisor)->Shutdown();
  std::fprintf(stderr, "tandem up: deployment stopped; no process left\n");
  return failed ? 1 : 0;
}

int RunUp(CLI::App* command, const UpOptions& options, const Target& target) {
  absl::StatusOr<deploy::DeploymentSpec> spec = deploy::LoadSpec(Env::Default(), options.spec_path);
  if (!spec.ok()) return ReportError(command, spec.status());
  if (options.drain_timeout_seconds <= 0) {
    return ReportError(command, absl::InvalidArgumentError("--drain-timeout must be positive"));
  }
  if (absl::StatusOr<deploy::StateFile> running =
          deploy::FindDeployment(target.run_dir, spec->name);
      running.ok() && deploy::ProcessExists(running->supervisor_pid)) {
    return ReportError(command, absl::AlreadyExistsError(absl::StrCat(
                                    "deployment '", spec->name,
                                    "' is already running (supervisor "
                                    "pid ",
                                    running->supervisor_pid, "); `tandem apply ", options.spec_path,
                                    "` updates it, `tandem down` stops it")));
  }
  if (!options.detach) return RunSupervisor(command, *std::move(spec), options, target, -1);

  // --detach: the supervisor runs in its own session; this process waits for its first report.
  const std::string run_dir = absl::StrCat(target.run_dir, "/", spec->name);
  ::mkdir(target.run_dir.c_str(), 0755);
  ::mkdir(run_dir.c_str(), 0755);
  const std::string log_path = run_dir + "/supervisor.log";
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) {
    return ReportError(command, absl::InternalError(std::strerror(errno)));
  }
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t child = ::fork();
  if (child < 0) return ReportError(command, absl::InternalError(std::strerror(errno)));
  if (child == 0) {
    ::close(pipe_fds[0]);
    ::setsid();
    int null_fd = ::open("/dev/null", O_RDONLY);
    int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    if (log_fd >= 0) {
      ::dup2(log_fd, STDOUT_FILENO);
      ::dup2(log_fd, STDERR_FILENO);
    }
    ::fcntl(pipe_fds[1], F_SETFD, FD_CLOEXEC);
    int code = RunSupervisor(command, *std::move(spec), options, target, pipe_fds[1]);
    std::fflush(stdout);
    std::fflush(stderr);
    ::_exit(code);
  }
  ::close(pipe_fds[1]);
  std::string line;
  char buffer[4096];
  while (line.find('\n') == std::string::npos) {
    ssize_t n = ::read(pipe_fds[0], buffer, sizeof(buffer));
    if (n > 0) {
      line.append(buffer, static_cast<size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  ::close(pipe_fds[0]);
  if (absl::StartsWith(line, "OK ")) {
    Target found = target;
    found.name = spec->name;
    absl::StatusOr<deploy::SupervisorClient> client = Connect(found);
    absl::StatusOr<DeploymentStatus> status =
        client.ok() ? client->Status() : absl::StatusOr<DeploymentStatus>(client.status());
    if (status.ok()) PrintUp(*status, run_dir, false);
    std::printf("supervisor pid %d, its log: %s\n", child, log_path.c_str());
    return 0;
  }
  std::string message = absl::StartsWith(line, "ERR ")
                            ? line.substr(4, line.find('\n') - 4)
                            : absl::StrCat("the supervisor exited during start-up; see ", log_path);
  std::fprintf(stderr, "tandem up: %s\n", message.c_str());
  // The supervisor rolls back and stops what it started; return once nothing is left.
  int wait_status = 0;
  while (::waitpid(child, &wait_status, 0) < 0 && errno == EINTR) {
  }
  return 1;
}

// ---- logs -----------------------------------------------------------------------------------

struct LogFile {
  std::string path;
  int ordinal = 0;
  int rank = 0;
};

// Log files of `selector` (ROLE or ROLE/i) in `logs_dir`, by ordinal and rank.
absl::StatusOr<std::vector<LogFile>> FindLogs(const std::string& logs_dir,
                                              const std::string& selector) {
  std::vector<std::string> parts = absl::StrSplit(selector, '/');
  const std::string role = parts[0];
  int wanted = -1;
  if (parts.size() > 2 || role.empty() ||
      (parts.size() == 2 && (!absl::SimpleAtoi(parts[1], &wanted) || wanted < 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", selector, "': expected ROLE or ROLE/INDEX (e.g. decode or decode/0)"));
  }
  std::vector<LogFile> files;
  std::vector<std::string> roles_seen;
  DIR* dir = ::opendir(logs_dir.c_str());
  if (dir == nullptr) return absl::NotFoundError(absl::StrCat("no log directory ", logs_dir));
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (!absl::EndsWith(name, ".log")) continue;
    std::string stem = name.substr(0, name.size() - 4);
    size_t dash = stem.rfind('-');
    if (dash == std::string::npos) continue;
    std::string file_role = stem.substr(0, dash);
    roles_seen.push_back(file_role);
    if (file_role != role) continue;
    std::vector<std::string> index = absl::StrSplit(stem.substr(dash + 1), ".rank");
    LogFile file;
    file.path = logs_dir + "/" + name;
    if (!absl::SimpleAtoi(index[0], &file.ordinal)) continue;
    if (index.size() > 1 && !absl::SimpleAtoi(index[1], &file.rank)) continue;
    if (wanted >= 0 && file.ordinal != wanted) continue;
    files.push_back(file);
  }
  ::closedir(dir);
  if (files.empty()) {
    std::sort(roles_seen.begin(), roles_seen.end());
    roles_seen.erase(std::unique(roles_seen.begin(), roles_seen.end()), roles_seen.end());
    return absl::NotFoundError(absl::StrCat(
        "no logs for '", selector, "' in ", logs_dir,
        "; roles with logs: ", roles_seen.empty() ? "none" : absl::StrJoin(roles_seen, ", ")));
  }
  std::sort(files.begin(), files.end(), [](const LogFile& a, const LogFile& b) {
    return std::tie(a.ordinal, a.rank) < std::tie(b.ordinal, b.rank);
  });
  return files;
}

std::string LastLines(const std::string& text, int lines) {
  if (lines < 0) return text;
  size_t at = text.size();
  if (at > 0 && text[at - 1] == '\n') --at;
  for (int i = 0; i < lines && at != std::string::npos && at > 0; ++i) {
    at = text.rfind('\n', at - 1);
  }
  if (at == std::string::npos || at == 0) return text;
  return text.substr(at + 1);
}

struct LogsOptions {
  std::string selector;
  bool follow = false;
  int tail = -1;
};

int RunLogs(CLI::App* command, const LogsOptions& options, const Target& target) {
  std::string run_dir;
  if (!target.name.empty()) {
    run_dir = absl::StrCat(target.run_dir, "/", target.name);
  } else {
    absl::StatusOr<deploy::StateFile> state = deploy::FindDeployment(target.run_dir, "");
    if (!state.ok()) return ReportError(command, state.status());
    run_dir = state->run_dir;
  }
  absl::StatusOr<std::vector<LogFile>> files = FindLogs(run_dir + "/logs", options.selector);
  if (!files.ok()) return ReportError(command, files.status());
  std::map<std::string, size_t> offsets;
  std::string current;
  auto print_new = [&](const LogFile& file, bool first) {
    std::ifstream in(file.path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    std::string content = text.str();
    size_t& offset = offsets[file.path];
    if (content.size() < offset) offset = 0;  // truncated
    if (content.size() == offset) return;
    std::string fresh = content.substr(offset);
    offset = content.size();
    if (first) fresh = LastLines(fresh, options.tail);
    if (files->size() > 1 && current != file.path) {
      std::printf("==> %s <==\n", file.path.c_str());
      current = file.path;
    }
    std::fwrite(fresh.data(), 1, fresh.size(), stdout);
  };
  for (const LogFile& file : *files) print_new(file, true);
  std::fflush(stdout);
  while (options.follow) {
    absl::SleepFor(absl::Milliseconds(200));
    absl::StatusOr<std::vector<LogFile>> now = FindLogs(run_dir + "/logs", options.selector);
    if (now.ok()) *files = *now;
    for (const LogFile& file : *files) print_new(file, !offsets.count(file.path));
    std::fflush(stdout);
  }
  return 0;
}

// ---- down, apply, scale ---------------------------------------------------------------------

int RunDown(CLI::App* command, const Target& target, double timeout_seconds) {
  absl::StatusOr<deploy::StateFile> state = deploy::FindDeployment(target.run_dir, target.name);
  if (!state.ok()) return ReportError(command, state.status());
  deploy::SupervisorClient client(*state);
  if (!client.SupervisorAlive()) {
    int left = deploy::CleanUpStaleDeployment(*state, absl::Seconds(10));
    std::printf(
        "deployment '%s': its supervisor was not running; stopped %d leftover process "
        "group(s)\n",
        state->name.c_str(), left);
    return 0;
  }
  // The freshest list of process groups, to verify nothing is left afterwards.
  if (absl::StatusOr<deploy::StateFile> fresh =
          deploy::ReadStateFile(deploy::StateFilePath(state->run_dir));
      fresh.ok()) {
    *state = *fresh;
  }
  absl::Status requested = client.RequestDown();
  if (!requested.ok()) return ReportError(command, requested);
  std::printf("stopping deployment '%s' (drain, then stop, in reverse startup order)...\n",
              state->name.c_str());
  std::fflush(stdout);
  const absl::Time deadline = absl::Now() + absl::Seconds(timeout_seconds);
  while (client.SupervisorAlive() && absl::Now() < deadline)
    absl::SleepFor(absl::Milliseconds(100));
  if (client.SupervisorAlive()) {
    return ReportError(
        command, absl::DeadlineExceededError(absl::StrCat(
                     "the supervisor (pid ", state->supervisor_pid, ") is still stopping after ",
                     timeout_seconds, "s; see ", state->run_dir, "/supervisor.log")));
  }
  int left = 0;
  for (pid_t group : state->process_groups) {
    if (deploy::ProcessGroupExists(group)) {
      ++left;
      deploy::SignalProcessGroup(group, SIGKILL);
    }
  }
  if (left > 0) std::printf("killed %d process group(s) the supervisor left\n", left);
  std::printf("deployment '%s' stopped\n", state->name.c_str());
  return 0;
}

// Polls the status until `done` says so; prints `describe` whenever it changes.
template <typename Done, typename Describe>
absl::StatusOr<DeploymentStatus> WatchStatus(const deploy::SupervisorClient& client,
                                             double timeout_seconds, Done done, Describe describe) {
  const absl::Time deadline =
      timeout_seconds > 0 ? absl::Now() + absl::Seconds(timeout_seconds) : absl::InfiniteFuture();
  std::string last;
  while (true) {
    absl::StatusOr<DeploymentStatus> status = client.Status();
    if (!status.ok()) return status.status();
    std::string line = describe(*status);
    if (line != last) {
      std::printf("  %s\n", line.c_str());
      std::fflush(stdout);
      last = line;
    }
    if (done(*status)) return status;
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("still not done after ", timeout_seconds, "s; `tandem status` shows where"));
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
}

std::string ReadyLine(const DeploymentStatus& status) {
  std::vector<std::string> parts;
  for (const deploy::RoleStatus& role : status.roles) {
    parts.push_back(absl::StrCat(role.name, " ", role.ready, "/", role.desired));
  }
  return absl::StrJoin(parts, ", ");
}

int RunApply(CLI::App* command, const std::string& spec_path, const Target& target, bool wait,
             double timeout_seconds) {
  Env& env = Env::Default();
  absl::StatusOr<std::string> text = env.ReadFile(spec_path);
  if (!text.ok()) return ReportError(command, text.status());
  absl::StatusOr<deploy::DeploymentSpec> spec = deploy::ParseSpec(*text, spec_path);
  if (!spec.ok()) return ReportError(command, spec.status());
  Target found = target;
  if (found.name.empty()) found.name = spec->name;
  absl::StatusOr<deploy::SupervisorClient> client = Connect(found);
  if (!client.ok()) return ReportError(command, client.status());
  absl::StatusOr<std::pair<int, std::vector<std::string>>> applied =
      client->Apply(*text, spec_path);
  if (!applied.ok()) return ReportError(command, applied.status());
  const int generation = applied->first;
  if (applied->second.empty()) {
    std::printf("deployment '%s': nothing to change (generation %d)\n", spec->name.c_str(),
                generation);
    return 0;
  }
  std::printf("deployment '%s': update to generation %d\n", spec->name.c_str(), generation);
  for (const std::string& change : applied->second) std::printf("  %s\n", change.c_str());
  if (!wait) return 0;
  absl::StatusOr<DeploymentStatus> status = WatchStatus(
      *client, timeout_seconds,
      [generation](const DeploymentStatus& s) {
        return s.update.generation != generation || s.update.state != "in_progress";
      },
      [](const DeploymentStatus& s) { return ReadyLine(s); });
  if (!status.ok()) return ReportError(command, status.status());
  if (status->update.generation != generation) {
    std::printf("superseded by generation %d\n", status->update.generation);
    return 0;
  }
  if (status->update.state == "complete") {
    std::printf("update complete: %s\n", status->update.message.c_str());
    return 0;
  }
  return ReportError(command, absl::AbortedError(absl::StrCat("update ", status->update.state, ": ",
                                                              status->update.message)));
}

int RunScale(CLI::App* command, const std::string& unit, int replicas, const Target& target,
             bool wait, double timeout_seconds) {
  absl::StatusOr<deploy::SupervisorClient> client = Connect(target);
  if (!client.ok()) return ReportError(command, client.status());
  absl::Status scaled = client->Scale(unit, replicas);
  if (!scaled.ok()) return ReportError(command, scaled);
  std::printf("%s: %d replicas requested\n", unit.c_str(), replicas);
  if (!wait) return 0;
  absl::StatusOr<DeploymentStatus> status = WatchStatus(
      *client, timeout_seconds,
      [&](const DeploymentStatus& s) {
        const deploy::UnitStatus* found = s.FindUnit(unit);
        if (found == nullptr) return true;
        if (found->desired != replicas || found->ready != replicas || found->members != replicas) {
          return false;
        }
        for (const deploy::RoleStatus& role : s.roles) {  // drained instances gone too
          if (role.unit != unit) continue;
          for (const deploy::InstanceStatus& instance : role.instances) {
            if (instance.state != "ready") return false;
          }
        }
        return true;
      },
      [&](const DeploymentStatus& s) {
        const deploy::UnitStatus* found = s.FindUnit(unit);
        return found == nullptr
                   ? std::string("gone")
                   : absl::StrCat(unit, ": ", found->ready, " ready of ", found->desired,
                                  " wanted, ", found->members, " running");
      });
  if (!status.ok()) return ReportError(command, status.status());
  return 0;
}

void RegisterUp(CLI::App& root) {
  {
    auto options = std::make_shared<UpOptions>();
    auto target = std::make_shared<Target>();
    CLI::App* up = root.add_subcommand(
        "up", "Run a deployment spec as processes on this machine (Ctrl-C or `tandem down` stops)");
    up->add_option("spec", options->spec_path, "Deployment spec (YAML)")->required();
    up->add_flag("-d,--detach", options->detach,
                 "Run the supervisor in the background once the deployment is up");
    up->add_option("--role-command", options->role_command,
                   "Program run instead of this `tandem` binary for every role (words separated "
                   "by spaces; for tests)");
    up->add_flag("--random-ports", options->random_ports,
                 "Put the router on a free port too, instead of the spec's port");
    up->add_option("--drain-timeout", options->drain_timeout_seconds,
                   "Seconds a draining instance may take before SIGTERM");
    AddTargetOptions(up, target);
    SetAction(up, [up, options, target]() { return RunUp(up, *options, *target); });
  }
  {
    auto target = std::make_shared<Target>();
    auto json = std::make_shared<bool>(false);
    CLI::App* status = root.add_subcommand(
        "status", "Roles, replicas, readiness, epochs and addresses of the running deployment");
    status->add_flag("--json", *json, "Print the status as JSON");
    AddTargetOptions(status, target);
    SetAction(status, [status, target, json]() -> int {
      absl::StatusOr<deploy::SupervisorClient> client = Connect(*target);
      if (!client.ok()) return ReportError(status, client.status());
      absl::StatusOr<DeploymentStatus> now = client->Status();
      if (!now.ok()) return ReportError(status, now.status());
      std::string out =
          *json ? deploy::StatusToJson(*now).dump(2) + "\n" : deploy::FormatStatus(*now);
      std::fwrite(out.data(), 1, out.size(), stdout);
      return 0;
    });
  }
  {
    auto options = std::make_shared<LogsOptions>();
    auto target = std::make_shared<Target>();
    CLI::App* logs = root.add_subcommand("logs", "Print the logs of a role or one instance");
    logs->add_option("instance", options->selector, "ROLE or ROLE/INDEX (as in `tandem status`)")
        ->required();
    logs->add_flag("-f,--follow", options->follow, "Keep printing what is appended");
    logs->add_option("-n,--tail", options->tail, "Only the last N lines of each file");
    AddTargetOptions(logs, target);
    SetAction(logs, [logs, options, target]() { return RunLogs(logs, *options, *target); });
  }
  {
    auto target = std::make_shared<Target>();
    auto timeout = std::make_shared<double>(600);
    CLI::App* down = root.add_subcommand(
        "down", "Stop the running deployment: drain, then stop, in reverse startup order");
    down->add_option("--timeout", *timeout, "Seconds to wait for the supervisor to finish");
    AddTargetOptions(down, target);
    SetAction(down, [down, target, timeout]() { return RunDown(down, *target, *timeout); });
  }
  {
    auto target = std::make_shared<Target>();
    auto spec_path = std::make_shared<std::string>();
    auto no_wait = std::make_shared<bool>(false);
    auto timeout = std::make_shared<double>(0);
    CLI::App* apply = root.add_subcommand(
        "apply", "Roll the running deployment to a changed spec (model, args, replicas, ...)");
    apply->add_option("spec", *spec_path, "Deployment spec (YAML)")->required();
    apply->add_flag("--no-wait", *no_wait, "Return once the update started");
    apply->add_option("--timeout", *timeout, "Seconds to wait for the update (0: no limit)");
    AddTargetOptions(apply, target);
    SetAction(apply, [apply, target, spec_path, no_wait, timeout]() {
      return RunApply(apply, *spec_path, *target, !*no_wait, *timeout);
    });
  }
  {
    auto target = std::make_shared<Target>();
    auto unit = std::make_shared<std::string>();
    auto replicas = std::make_shared<int>(0);
    auto wait = std::make_shared<bool>(false);
    auto timeout = std::make_shared<double>(0);
    CLI::App* scale = root.add_subcommand(
        "scale", "Set the replicas of a role or scaling group (scale-down drains first)");
    scale->add_option("target", *unit, "Role (outside scaling groups) or scaling group")
        ->required();
    scale->add_option("replicas", *replicas, "Replicas wanted")->required();
    scale->add_flag("--wait", *wait, "Wait until exactly that many are ready");
    scale->add_option("--timeout", *timeout, "Seconds to wait with --wait (0: no limit)");
    AddTargetOptions(scale, target);
    SetAction(scale, [scale, target, unit, replicas, wait, timeout]() {
      return RunScale(scale, *unit, *replicas, *target, *wait, *timeout);
    });
  }
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterUp);
}  // namespace tandem::cli
