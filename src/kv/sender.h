// KvSender: the prefill worker's side of the KV transfer path.
//
// A prefill job names the decode worker's KV address, its epoch, a reservation id and the
// number of blocks to fill. The prefill worker opens a transfer, hands it each layer's blocks as
// soon as the layer is computed (SendLayer and SendBlocks return at once; a sender thread streams
// in the background so the transfer overlaps compute), and finishes with the first sampled token.
// Over TCP each chunk goes out with one sendmsg straight from the prefill worker's own KV blocks;
// over shared memory (same host, receiver's segment mapped) the sender copies each block straight
// into the decode worker's reserved block. Connections are authenticated once and reused.
//
//   KvSender sender({.token = token, .epoch = my_epoch});
//   auto transfer = sender.Begin(host, port, {.reservation_id = id, .receiver_epoch = epoch,
//                                             .num_layers = L, .num_blocks = n,
//                                             .layer_block_bytes = bytes});
//   for (layer ...) (*transfer)->SendLayer(layer, block_pointers_of_this_layer);
//   absl::Status done = (*transfer)->Finish(first_token);
//
// Thread-safety: KvSender is thread-safe. One OutgoingTransfer is driven by one thread; the
// block bytes handed to SendLayer must stay unchanged until Finish or Abort returns.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kv/metrics.h"
#include "kv/wire.h"

namespace tandem::kv {

enum class Transport { kAuto, kTcp, kSharedMemory };
absl::Status ParseTransport(const std::string& text, Transport* transport);

struct KvSenderOptions {
  std::string token;
  uint64_t epoch = 0;
  Transport transport = Transport::kAuto;
  int connect_timeout_ms = 3000;
  int reply_timeout_ms = 10'000;
  uint32_t max_blocks_per_chunk = 256;
  KvMetrics* metrics = nullptr;  // optional
};

class OutgoingTransfer {
 public:
  virtual ~OutgoingTransfer() = default;
  // Queues `blocks` (one pointer per block of the transfer, in order) for `layer`.
  void SendLayer(uint32_t layer, std::vector<const uint8_t*> blocks) {
    SendBlocks(layer, 0, std::move(blocks));
  }
  // Queues transfer blocks [first_block, first_block + blocks.size()) of `layer`: what one prefill
  // chunk made final, so a long, chunked prefill streams while it computes. Each (layer, block)
  // of the transfer must be sent exactly once before Finish.
  virtual void SendBlocks(uint32_t layer, uint32_t first_block,
                          std::vector<const uint8_t*> blocks) = 0;
  // Waits for every queued layer, sends End and waits for the receiver's Complete.
  virtual absl::Status Finish(int32_t first_token) = 0;
  // Stops sending and tells the receiver; safe to call at any time, also after a failure.
  virtual void Abort(const std::string& reason) = 0;
  // True when the transfer writes through shared memory.
  virtual bool shared_memory() const = 0;
};

class KvSender {
 public:
  explicit KvSender(KvSenderOptions options);
  ~KvSender();
  KvSender(const KvSender&) = delete;
  KvSender& operator=(const KvSender&) = delete;

  // Opens a transfer into a reservation. Refused transfers (unknown reservation, stale epoch,
  // expired lease, shape mismatch, wrong token) return the receiver's reason.
  absl::StatusOr<std::unique_ptr<OutgoingTransfer>> Begin(const std::string& host, int port,
                                                          const BeginMessage& begin);

  struct PeerConnection;

 private:
  friend class TransferImpl;
  absl::StatusOr<std::unique_ptr<PeerConnection>> Connect(const std::string& host, int port);
  void Return(std::unique_ptr<PeerConnection> connection);

  const KvSenderOptions options_;
  absl::Mutex mu_;
  std::vector<std::unique_ptr<PeerConnection>> idle_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::kv
