// Child processes for the local orchestrator: spawn a command in its own process group with
// stdout/stderr appended to a log file, signal whole groups, reap exits, pick free ports.
//
//   absl::StatusOr<pid_t> pid = SpawnProcess({.argv = {"tandem", "router", "--listen", addr},
//                                             .env = {{"TANDEM_ROLE", "router"}},
//                                             .log_path = "run/local/logs/router-0.log"});
//   ... SignalProcessGroup(*pid, SIGTERM); ... ReapExited() ...
//
// Each child leads its own process group (pgid == pid), so signalling -pgid also reaches what the
// child started, and a terminal's Ctrl-C (sent to the foreground group) does not reach it: the
// supervisor decides how its children stop. The child starts with default signal dispositions
// and an empty signal mask whatever the supervisor blocked.
//
// Thread-safety: every function may be called from any thread (posix_spawn, no fork handlers).
#pragma once

#include <sys/types.h>

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::deploy {

struct SpawnOptions {
  std::vector<std::string> argv;           // argv[0] is looked up in PATH when it has no '/'
  std::map<std::string, std::string> env;  // added to (and overriding) the supervisor's environ
  std::string log_path;  // stdout and stderr are appended here; stdin is /dev/null
};

// Starts the process; kInvalidArgument for an empty argv, kNotFound / kPermissionDenied /
// kInternal with the program's name when it cannot be executed or the log cannot be opened.
absl::StatusOr<pid_t> SpawnProcess(const SpawnOptions& options);

// Sends `signal` to every process of group `pgid`. False when the group no longer exists.
bool SignalProcessGroup(pid_t pgid, int signal);

// True while at least one process of group `pgid` exists (zombies included until reaped).
bool ProcessGroupExists(pid_t pgid);

// True while process `pid` exists.
bool ProcessExists(pid_t pid);

struct ExitedChild {
  pid_t pid = 0;
  int wait_status = 0;  // as from waitpid
};
// Reaps one exited child among `pids` without blocking, or returns pid 0.
ExitedChild ReapOne(const std::vector<pid_t>& pids);

// "exited with status 3", "killed by signal 9 (Killed)".
std::string DescribeWaitStatus(int wait_status);

// A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it).
absl::StatusOr<int> PickFreePort();

// The absolute path of the running executable (/proc/self/exe).
std::string CurrentExecutable();

}  // namespace tandem::deploy
