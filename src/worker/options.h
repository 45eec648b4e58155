// The worker process's configuration (`tandem worker` flags) and the helpers that turn flag
// text into it: roles, addresses, the prefill fallback policy, the location and the cluster
// token.
//
//   TANDEM_ASSIGN_OR_RETURN(Role role, ParseRole("decode"));
//   TANDEM_ASSIGN_OR_RETURN(HostPort listen, ParseHostPort("127.0.0.1:8101", "--listen"));
//
// Cluster token. Every worker, the router and every KV transfer prove the same token. When no
// token is given (neither --cluster-token nor TANDEM_CLUSTER_TOKEN) and every address the worker
// listens on is loopback, the per-user default token of this host is used: the file
// `$HOME/.tandem/cluster-token` (created with 32 random bytes, mode 0600, when absent; refused
// when another user could read it). Processes of one user on one host (`tandem up`) thus agree
// without configuration and other users cannot connect. A worker that listens beyond loopback
// without a token refuses to start.
//
// Thread-safety: stateless functions; the structs are plain values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/env.h"
#include "core/kv_type.h"
#include "kv/sender.h"

namespace tandem::worker {

enum class Role { kPrefill, kDecode, kBoth };
absl::string_view RoleName(Role role);
absl::StatusOr<Role> ParseRole(absl::string_view text);
inline bool ServesGenerate(Role role) { return role != Role::kPrefill; }
inline bool ServesPrefill(Role role) { return role != Role::kDecode; }

enum class PrefillFallback { kLocal, kFail };
absl::StatusOr<PrefillFallback> ParsePrefillFallback(absl::string_view text);

struct HostPort {
  std::string host;
  int port = 0;
  std::string ToString() const;  // "host:port", IPv6 hosts in brackets
};
// "HOST:PORT" or "[V6]:PORT"; port 0..65535. `flag` names the option in errors.
absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, absl::string_view flag);
bool IsLoopbackHost(absl::string_view host);
bool IsWildcardHost(absl::string_view host);

struct Location {
  std::string host;
  std::string rack;
};
// "host=a,rack=b" (either key optional).
absl::StatusOr<Location> ParseLocation(absl::string_view text);

struct WorkerOptions {
  Role role = Role::kBoth;
  std::string model;
  HostPort listen{"127.0.0.1", 0};
  HostPort advertise;  // empty host: the listen address
  HostPort kv_listen{"127.0.0.1", 0};
  std::string router_url;  // empty: no registration
  int tp = 1;
  PrefillFallback prefill_fallback = PrefillFallback::kLocal;
  kv::Transport kv_transport = kv::Transport::kAuto;
  // Decode side: verify the checksum of every shared-memory chunk (TCP chunks always are).
  bool kv_verify_shm = false;
  std::string cluster_token;  // resolved (never empty once the worker starts)
  int64_t kv_budget_bytes = 256ll << 20;
  // engine::EngineOptions::lock_memory (--mlock).
  bool lock_memory = false;
  int threads = 0;
  int64_t lease_ms = 30'000;
  Location location;
  int http_threads = 2;
  int64_t max_batch_tokens = 512;
  int block_size = 16;
  // The KV cache's element type; unset = auto (engine::ResolveKvType). Prefill and decode
  // workers must agree: a KV transfer between different types is refused.
  std::optional<KvType> kv_type;
  absl::Duration heartbeat_interval = absl::Seconds(1);
  int max_prefill_timeout_ms = 600'000;
  // Requests (generate and prefill) in flight at once; more are answered 429.
  int64_t max_requests = 1024;
};

// The token to use given the flag/variable value and whether every listen address is loopback
// (see the header comment). InvalidArgument when none can be used.
absl::StatusOr<std::string> ResolveClusterToken(const std::string& given, bool all_loopback,
                                                Env& env);

}  // namespace tandem::worker
