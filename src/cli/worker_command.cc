// `tandem worker`: one inference worker — prefill, decode or both (docs/protocols.md, "Worker
// control API"; docs/deploy-spec.md, "Command lines").
//
//   tandem worker --role both --model random:tiny --listen 127.0.0.1:8101
//   tandem worker --role decode --model m.gguf --listen 0.0.0.0:8101 --advertise 10.0.0.5:8101
//       --kv-listen 0.0.0.0:9101 --router http://10.0.0.2:8000 --cluster-token "$TOKEN"
//
// SIGTERM or SIGINT drains (no new work; in-flight requests finish, up to --drain-timeout
// seconds), then the process exits 0.
#include <signal.h>

#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/logging.h"
#include "core/status.h"
#include "engine/engine.h"
#include "kv/sender.h"
#include "worker/options.h"
#include "worker/worker.h"

namespace tandem::cli {
namespace {

struct WorkerFlags {
  std::string role = "both";
  std::string model;
  std::string listen = "127.0.0.1:8101";
  std::string advertise;
  std::string kv_listen = "127.0.0.1:0";
  std::string router;
  int tp = 1;
  int nodes = 1;
  int node_rank = 0;
  std::string leader;
  std::string prefill_fallback = "local";
  std::string kv_transport = "auto";
  bool kv_verify_shm = false;
  std::string cluster_token;
  int64_t kv_budget = 256ll << 20;
  bool mlock = false;
  int threads = 0;
  int64_t lease_ms = 30'000;
  std::string location;
  int http_threads = 2;
  int64_t max_batch_tokens = 512;
  int block_size = 16;
  std::string kv_dtype = "auto";
  double drain_timeout = 120;
  int64_t max_requests = 1024;
};

absl::StatusOr<worker::WorkerOptions> ToOptions(const CLI::App* command, const WorkerFlags& f) {
  TANDEM_RETURN_IF_ERROR(RequireOptions(command, {"model"}));
  worker::WorkerOptions o;
  TANDEM_ASSIGN_OR_RETURN(o.role, worker::ParseRole(f.role));
  o.model = f.model;
  TANDEM_ASSIGN_OR_RETURN(o.listen, worker::ParseHostPort(f.listen, "--listen"));
  if (!f.advertise.empty()) {
    TANDEM_ASSIGN_OR_RETURN(o.advertise, worker::ParseHostPort(f.advertise, "--advertise"));
  }
  TANDEM_ASSIGN_OR_RETURN(o.kv_listen, worker::ParseHostPort(f.kv_listen, "--kv-listen"));
  if (!f.router.empty() && f.router.rfind("http://", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--router: '", f.router, "' is not an http:// URL"));
  }
  o.router_url = f.router;
  if (f.tp < 1) return absl::InvalidArgumentError("--tp must be at least 1");
  o.tp = f.tp;
  if (f.nodes != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nodes ", f.nodes,
                     ": this engine runs a tensor-parallel group inside one process; "
                     "multi-host groups (--nodes > 1) are not supported"));
  }
  TANDEM_ASSIGN_OR_RETURN(o.prefill_fallback, worker::ParsePrefillFallback(f.prefill_fallback));
  TANDEM_RETURN_IF_ERROR(
      Annotate(kv::ParseTransport(f.kv_transport, &o.kv_transport), "--kv-transport"));
  o.kv_verify_shm = f.kv_verify_shm;
  if (f.kv_budget <= 0) return absl::InvalidArgumentError("--kv-budget must be positive (bytes)");
  o.kv_budget_bytes = f.kv_budget;
  o.lock_memory = f.mlock;
  if (f.threads < 0) return absl::InvalidArgumentError("--threads must be 0 (all cores) or more");
  o.threads = f.threads;
  if (f.lease_ms < 1) return absl::InvalidArgumentError("--lease-ms must be at least 1");
  o.lease_ms = f.lease_ms;
  TANDEM_ASSIGN_OR_RETURN(o.location, worker::ParseLocation(f.location));
  if (f.http_threads < 1) return absl::InvalidArgumentError("--http-threads must be at least 1");
  o.http_threads = f.http_threads;
  if (f.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("--max-batch-tokens must be at least 1");
  }
  o.max_batch_tokens = f.max_batch_tokens;
  if (f.block_size < 1 || f.block_size > 1024) {
    return absl::InvalidArgumentError("--block-size must be in 1..1024");
  }
  o.block_size = f.block_size;
  absl::StatusOr<std::optional<KvType>> kv_type = engine::ParseKvTypeOption(f.kv_dtype);
  if (!kv_type.ok()) return Annotate(kv_type.status(), "--kv-dtype");
  o.kv_type = *kv_type;
  if (f.max_requests < 1) return absl::InvalidArgumentError("--max-requests must be at least 1");
  o.max_requests = f.max_requests;
  const bool all_loopback =
      worker::IsLoopbackHost(o.listen.host) && worker::IsLoopbackHost(o.kv_listen.host);
  TANDEM_ASSIGN_OR_RETURN(
      o.cluster_token, worker::ResolveClusterToken(f.cluster_token, all_loopback, Env::Default()));
  return o;
}

int RunWorker(const CLI::App* command, const WorkerFlags& flags) {
  // Signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<worker::WorkerOptions> options = ToOptions(command, flags);
  if (!options.ok()) return ReportError(command, options.status());
  if (options->tp > 1) {
    LogInfo("tensor-parallel size is informational on this engine: one process runs the group",
            {{"tp", options->tp}});
  }
  absl::StatusOr<std::unique_ptr<worker::Worker>> worker = worker::Worker::Start(*options);
  if (!worker.ok()) return ReportError(command, worker.status());

  int signal = 0;
  while (::sigwait(&signals, &signal) != 0) {
  }
  LogInfo("draining before exit", {{"signal", ::strsignal(signal)}});
  (*worker)->Drain();
  if (!(*worker)->WaitIdle(absl::Seconds(flags.drain_timeout))) {
    LogWarn("drain timeout passed; cancelling what is left",
            {{"drain_timeout_s", flags.drain_timeout}});
  }
  (*worker)->Stop();
  return 0;
}

void RegisterWorker(CLI::App& root) {
  auto* command = root.add_subcommand(
      "worker", "Run an inference worker: prefill, decode or both (the worker control API)");
  auto f = std::make_shared<WorkerFlags>();
  command->add_option("--role", f->role, "prefill, decode or both (default both)");
  command->add_option("--model", f->model,
                      "Model: a GGUF file, a Hugging Face folder or random:<preset>");
  command->add_option("--listen", f->listen,
                      "HOST:PORT of the control API (default 127.0.0.1:8101)");
  command->add_option("--advertise", f->advertise,
                      "HOST:PORT others reach this worker at (default: --listen)");
  command->add_option("--kv-listen", f->kv_listen,
                      "HOST:PORT of the KV receiver (decode and both roles; port 0: any)");
  command->add_option("--router", f->router,
                      "Router URL to register with (heartbeat every second)");
  command->add_option("--tp", f->tp, "Tensor-parallel size of this instance");
  command->add_option("--nodes", f->nodes, "Hosts in this instance's tensor-parallel group");
  command->add_option("--node-rank", f->node_rank, "This host's rank in the group");
  command->add_option("--leader", f->leader, "HOST:PORT of the group's rank 0");
  command->add_option("--prefill-fallback", f->prefill_fallback,
                      "When a remote prefill fails: local (prefill here) or fail");
  command->add_option("--kv-transport", f->kv_transport,
                      "auto (shared memory on one host, else TCP), shm or tcp");
  command->add_flag("--kv-verify-shm", f->kv_verify_shm,
                    "Verify the checksum of every KV chunk written through shared memory "
                    "(TCP chunks always are; costs a hash pass on both workers)");
  command->add_option("--cluster-token", f->cluster_token,
                      "Shared secret of workers and router (TANDEM_CLUSTER_TOKEN); on loopback "
                      "the default is ~/.tandem/cluster-token");
  command->add_option("--kv-budget", f->kv_budget, "KV cache bytes (default 256 MiB)");
  command->add_flag("--mlock", f->mlock,
                    "Lock the weights and the KV cache in RAM, so memory pressure never pages "
                    "them out (needs RLIMIT_MEMLOCK for their size, or CAP_IPC_LOCK)");
  command->add_option("--threads", f->threads, "Engine threads (0: one per core)");
  command->add_option("--lease-ms", f->lease_ms,
                      "How long reserved KV blocks wait for a prefill worker (default 30000); "
                      "also bounds a remote prefill's timeout");
  command->add_option("--location", f->location, "Topology: host=NAME,rack=NAME");
  command->add_option("--http-threads", f->http_threads, "Control API event loops (default 2)");
  command->add_option("--max-batch-tokens", f->max_batch_tokens,
                      "Tokens per engine step (default 512)");
  command->add_option("--block-size", f->block_size,
                      "Tokens per KV block (default 16; equal on prefill and decode workers)");
  command->add_option("--kv-dtype", f->kv_dtype,
                      "KV cache element type: auto (bf16 unless the model's weights are f32), "
                      "f32 or bf16; equal on prefill and decode workers");
  command->add_option("--max-requests", f->max_requests,
                      "Requests in flight at once; more are answered 429 (default 1024)");
  command->add_option("--drain-timeout", f->drain_timeout,
                      "Seconds SIGTERM waits for in-flight requests (default 120)");
  SetAction(command, [command, f]() { return RunWorker(command, *f); });
}

}  // namespace

TANDEM_REGISTER_COMMAND(RegisterWorker);

}  // namespace tandem::cli
