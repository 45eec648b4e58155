// Reservations: KV blocks a decode worker set aside for one prefill transfer, with a lease.
//
// The decode worker reserves blocks for a request (engine side), wraps them in a KvTarget and
// registers them here; the returned id travels to the prefill worker in the prefill job. The
// receiver (kv_receiver.h) looks reservations up when a Begin frame arrives. Each reservation
// ends exactly once, through its `on_done` callback: OK with the first token when every layer of
// every block arrived, or an error (lease expired, cancelled, checksum mismatch, sender gone).
// The callback is where the engine adopts or frees the blocks.
//
//   ReservationTable table(epoch);
//   uint64_t id = table.Add({.num_layers = 24, .num_blocks = 8, .layer_block_bytes = 4096,
//                            .lease_deadline_micros = now + 5'000'000, .target = target,
//                            .on_done = [](absl::Status s, int32_t first) { ... }});
//   ...
//   table.ExpireDue(env.NowMicros());   // called periodically by the receiver
//
// Thread-safety: all methods are safe to call concurrently. `on_done` runs on the thread that
// ended the reservation, never while a table lock is held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "kv/wire.h"

namespace tandem::kv {

// Where a reservation's bytes go: the decode worker's reserved KV blocks.
class KvTarget {
 public:
  virtual ~KvTarget() = default;
  // The `layer_block_bytes` bytes of `layer` in the `block`-th reserved block.
  virtual uint8_t* LayerBlock(uint32_t layer, uint32_t block) = 0;
  // For the shared-memory transport: the offset of LayerBlock(0, b) in the shared segment for
  // each block, and the distance between consecutive layers. False when not in a segment.
  virtual bool SharedOffsets(std::vector<uint64_t>* block_offsets, uint64_t* layer_stride) {
    return false;
  }
};

using DoneCallback = std::function<void(absl::Status status, int32_t first_token)>;

struct ReservationSpec {
  uint32_t num_layers = 0;
  uint32_t num_blocks = 0;
  uint64_t layer_block_bytes = 0;
  uint8_t kv_type = 0;  // KvType code of the reserved blocks (BeginMessage::kv_type)
  int64_t lease_deadline_micros = 0;
  std::shared_ptr<KvTarget> target;
  DoneCallback on_done;
};

enum class ReservationState {
  kReserved,      // waiting for a sender
  kTransferring,  // a connection is filling it
  kAborting,      // ended, waiting for the sender to stop writing (shared memory)
};

class Reservation {
 public:
  Reservation(uint64_t id, ReservationSpec spec);

  uint64_t id() const { return id_; }
  const ReservationSpec& spec() const { return spec_; }

  // Marks `count` blocks of `layer` from `first_block` as received.
  void MarkReceived(uint32_t layer, uint32_t first_block, uint32_t count);
  bool AllReceived() const;
  uint64_t received_bytes() const { return received_bytes_; }

 private:
  uint64_t id_;
  ReservationSpec spec_;
  std::vector<bool> received_;  // layer-major
  size_t received_count_ = 0;
  uint64_t received_bytes_ = 0;
};

struct ReservationStats {
  size_t active = 0;
  uint64_t completed = 0;
  uint64_t expired = 0;
  uint64_t cancelled = 0;
  uint64_t failed = 0;
};

class ReservationTable {
 public:
  explicit ReservationTable(uint64_t epoch) : epoch_(epoch) {}
  ReservationTable(const ReservationTable&) = delete;
  ReservationTable& operator=(const ReservationTable&) = delete;

  uint64_t epoch() const { return epoch_; }

  // Registers blocks reserved for a transfer and returns the reservation id.
  uint64_t Add(ReservationSpec spec);

  // Claims a reservation for a transfer described by `begin` on connection `connection`.
  // Refuses unknown ids, other epochs, expired leases, shape mismatches, and reservations a
  // transfer already claimed; `code` says why.
  absl::StatusOr<std::shared_ptr<Reservation>> Claim(const BeginMessage& begin, uint64_t connection,
                                                     int64_t now_micros, RefusalCode* code);

  // Ends a claimed reservation successfully (every block arrived).
  // Returns false when the reservation had already ended or is being aborted.
  bool Complete(uint64_t id, int32_t first_token);
  // Ends a reservation with `status` (sender failed, checksum mismatch, ...). When the transfer
  // writes through shared memory and the sender may still be writing, `wait_for_sender` keeps the
  // blocks out of use (state kAborting) until ReleaseAborted(id) says the sender stopped.
  // Returns true when this call ended the reservation or marked it aborting.
  bool Fail(uint64_t id, absl::Status status, bool wait_for_sender = false);
  void ReleaseAborted(uint64_t id);
  // Cancels a reservation from the decode side (request cancelled). Returns false if unknown.
  // Returns the connection that must be told to abort via `connection` (0 when none).
  bool Cancel(uint64_t id, uint64_t* connection);

  // Expires reservations whose lease has passed. Unclaimed ones end at once; claimed ones are
  // returned (id, connection) so the receiver can abort their transfers.
  // `expired_unclaimed` (optional) receives how many unclaimed reservations ended.
  std::vector<std::pair<uint64_t, uint64_t>> ExpireDue(int64_t now_micros,
                                                       int* expired_unclaimed = nullptr);

  // Ends every reservation a connection claimed (the connection closed).
  void FailConnection(uint64_t connection, const absl::Status& status);

  ReservationStats Stats() const;
  // The earliest lease deadline among open reservations, or INT64_MAX.
  int64_t NextDeadline() const;

 private:
  struct Entry {
    std::shared_ptr<Reservation> reservation;
    ReservationState state = ReservationState::kReserved;
    uint64_t connection = 0;
    absl::Status pending_status;  // the end status while kAborting
    DoneCallback on_done;
  };
  // Removes `id` and returns its callback to run outside the lock.
  DoneCallback Finish(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CountEnd(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t epoch_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> entries_ ABSL_GUARDED_BY(mu_);
  ReservationStats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::kv
