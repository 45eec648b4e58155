// KvReceiver: the decode worker's side of the KV transfer path.
//
// Listens for prefill workers, authenticates them with the cluster token, and fills the
// reservations registered in a ReservationTable: over TCP it reads each chunk's payload straight
// into the reserved blocks (no staging buffer); over shared memory the sender has already written
// the blocks and the receiver verifies the chunk checksum in place. A reaper thread expires
// leases and aborts transfers that outlive them; a connection that closes mid-transfer fails its
// reservation, so blocks always return to the pool.
//
//   ReservationTable table(epoch);
//   KvReceiverOptions options{.token = token, .segment = segment.get()};
//   absl::StatusOr<std::unique_ptr<KvReceiver>> receiver =
//       KvReceiver::Start(options, &table, Env::Default());
//   int port = (*receiver)->port();
//
// Thread-safety: Start/Stop from one thread; the table may be used concurrently.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "kv/metrics.h"
#include "kv/reservation.h"
#include "kv/shared_segment.h"

namespace tandem::kv {

struct KvReceiverOptions {
  std::string host = "127.0.0.1";          // loopback unless configured otherwise
  int port = 0;                            // 0: the OS picks; see port()
  std::string token;                       // the cluster token every peer must prove
  const SharedSegment* segment = nullptr;  // announced to same-host senders when set
  // Over shared memory the bytes never cross a wire: verifying each chunk's checksum costs a hash
  // pass on both sides (about half the copy bandwidth), so it is asked for (--kv-verify-shm).
  // TCP chunks are always verified.
  bool verify_shared_memory_checksums = false;
  int handshake_timeout_ms = 5000;
  int max_connections = 256;
  KvMetrics* metrics = nullptr;  // optional
};

class KvReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<KvReceiver>> Start(KvReceiverOptions options,
                                                           ReservationTable* table, Env& env);
  virtual ~KvReceiver() = default;

  virtual int port() const = 0;
  // Aborts the reservation's transfer if one is running (decode-side cancel), else ends it.
  virtual void Cancel(uint64_t reservation_id) = 0;
  // Stops accepting, closes every connection (failing their reservations), joins threads.
  virtual void Stop() = 0;
};

}  // namespace tandem::kv
