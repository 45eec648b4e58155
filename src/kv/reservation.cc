#include "kv/reservation.h"

#include <climits>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "kv/auth.h"

namespace tandem::kv {

Reservation::Reservation(uint64_t id, ReservationSpec spec)
    : id_(id),
      spec_(std::move(spec)),
      received_(static_cast<size_t>(spec_.num_layers) * spec_.num_blocks, false) {}

void Reservation::MarkReceived(uint32_t layer, uint32_t first_block, uint32_t count) {
  for (uint32_t b = first_block; b < first_block + count; ++b) {
    size_t index = static_cast<size_t>(layer) * spec_.num_blocks + b;
    if (!received_[index]) {
      received_[index] = true;
      ++received_count_;
    }
  }
  received_bytes_ += static_cast<uint64_t>(count) * spec_.layer_block_bytes;
}

bool Reservation::AllReceived() const { return received_count_ == received_.size(); }

uint64_t ReservationTable::Add(ReservationSpec spec) {
  absl::MutexLock lock(&mu_);
  uint64_t id = RandomU64();
  while (entries_.contains(id)) id = RandomU64();
  Entry& entry = entries_[id];
  entry.on_done = std::move(spec.on_done);
  entry.reservation = std::make_shared<Reservation>(id, std::move(spec));
  return id;
}

absl::StatusOr<std::shared_ptr<Reservation>> ReservationTable::Claim(const BeginMessage& begin,
                                                                     uint64_t connection,
                                                                     int64_t now_micros,
                                                                     RefusalCode* code) {
  absl::MutexLock lock(&mu_);
  if (begin.receiver_epoch != epoch_) {
    *code = RefusalCode::kStaleEpoch;
    return absl::FailedPreconditionError(absl::StrCat(
        "transfer names receiver epoch ", begin.receiver_epoch, " but this worker is epoch ",
        epoch_, " (it restarted since the reservation was made)"));
  }
  auto it = entries_.find(begin.reservation_id);
  if (it == entries_.end()) {
    *code = RefusalCode::kUnknownReservation;
    return absl::NotFoundError(
        absl::StrCat("reservation ", begin.reservation_id, " is unknown (expired or cancelled?)"));
  }
  Entry& entry = it->second;
  const ReservationSpec& spec = entry.reservation->spec();
  if (entry.state != ReservationState::kReserved) {
    *code = RefusalCode::kUnknownReservation;
    return absl::FailedPreconditionError(
        absl::StrCat("reservation ", begin.reservation_id, " is already being filled"));
  }
  if (now_micros >= spec.lease_deadline_micros) {
    *code = RefusalCode::kLeaseExpired;
    return absl::DeadlineExceededError(
        absl::StrCat("reservation ", begin.reservation_id, " lease expired"));
  }
  if (begin.kv_type != spec.kv_type) {
    // Checked before the shape: with one model, F32 and BF16 KV differ in layer_block_bytes
    // alone, and the types are what the operator must fix.
    *code = RefusalCode::kShapeMismatch;
    return absl::InvalidArgumentError(
        absl::StrCat("reservation ", begin.reservation_id, " holds ", KvTypeCodeName(spec.kv_type),
                     " KV but the sender's KV is ", KvTypeCodeName(begin.kv_type),
                     ": run the prefill and decode workers with the same --kv-dtype"));
  }
  if (begin.num_layers != spec.num_layers || begin.num_blocks != spec.num_blocks ||
      begin.layer_block_bytes != spec.layer_block_bytes) {
    *code = RefusalCode::kShapeMismatch;
    return absl::InvalidArgumentError(absl::StrCat(
        "reservation ", begin.reservation_id, " holds ", spec.num_blocks, " blocks x ",
        spec.num_layers, " layers x ", spec.layer_block_bytes, " bytes; transfer offers ",
        begin.num_blocks, " x ", begin.num_layers, " x ", begin.layer_block_bytes));
  }
  entry.state = ReservationState::kTransferring;
  entry.connection = connection;
  return entry.reservation;
}

DoneCallback ReservationTable::Finish(uint64_t id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return nullptr;
  DoneCallback callback = std::move(it->second.on_done);
  entries_.erase(it);
  return callback;
}

void ReservationTable::CountEnd(const absl::Status& status) {
  if (status.code() == absl::StatusCode::kDeadlineExceeded) {
    ++stats_.expired;
  } else if (status.code() == absl::StatusCode::kCancelled) {
    ++stats_.cancelled;
  } else {
    ++stats_.failed;
  }
}

bool ReservationTable::Complete(uint64_t id, int32_t first_token) {
  DoneCallback callback;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state != ReservationState::kTransferring) return false;
    ++stats_.completed;
    callback = Finish(id);
  }
  if (callback) callback(absl::OkStatus(), first_token);
  return true;
}

bool ReservationTable::Fail(uint64_t id, absl::Status status, bool wait_for_sender) {
  DoneCallback callback;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state == ReservationState::kAborting) return false;
    if (wait_for_sender && it->second.state == ReservationState::kTransferring) {
      it->second.state = ReservationState::kAborting;
      it->second.pending_status = std::move(status);
      return true;
    }
    CountEnd(status);
    callback = Finish(id);
  }
  if (callback) callback(status, -1);
  return true;
}

void ReservationTable::ReleaseAborted(uint64_t id) {
  DoneCallback callback;
  absl::Status status;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end() || it->second.state != ReservationState::kAborting) return;
    status = it->second.pending_status;
    CountEnd(status);
    callback = Finish(id);
  }
  if (callback) callback(status, -1);
}

bool ReservationTable::Cancel(uint64_t id, uint64_t* connection) {
  *connection = 0;
  {
    absl::MutexLock lock(&mu_);
    auto it = entries_.find(id);
    if (it == entries_.end()) return false;
    if (it->second.state != ReservationState::kReserved) {
      *connection = it->second.connection;
      return true;  // the receiver aborts the transfer, which ends the reservation
    }
  }
  Fail(id, absl::CancelledError(absl::StrCat("reservation ", id, " was cancelled")));
  return true;
}

std::vector<std::pair<uint64_t, uint64_t>> ReservationTable::ExpireDue(int64_t now_micros,
                                                                       int* expired_unclaimed) {
  std::vector<uint64_t> unclaimed;
  std::vector<std::pair<uint64_t, uint64_t>> claimed;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (entry.reservation->spec().lease_deadline_micros > now_micros) continue;
      if (entry.state == ReservationState::kReserved) {
        unclaimed.push_back(id);
      } else if (entry.state == ReservationState::kTransferring) {
        claimed.emplace_back(id, entry.connection);
      }
    }
  }
  int ended = 0;
  for (uint64_t id : unclaimed) {
    ended += Fail(id, absl::DeadlineExceededError(absl::StrCat(
                          "reservation ", id, ": lease expired before any sender came")))
                 ? 1
                 : 0;
  }
  if (expired_unclaimed != nullptr) *expired_unclaimed = ended;
  return claimed;
}

void ReservationTable::FailConnection(uint64_t connection, const absl::Status& status) {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      if (entry.connection == connection && entry.state != ReservationState::kReserved) {
        ids.push_back(id);
      }
    }
  }
  for (uint64_t id : ids) {
    ReleaseAborted(id);  // a closed connection can no longer write
    Fail(id, status);
  }
}

ReservationStats ReservationTable::Stats() const {
  absl::MutexLock lock(&mu_);
  ReservationStats stats = stats_;
  stats.active = entries_.size();
  return stats;
}

int64_t ReservationTable::NextDeadline() const {
  absl::MutexLock lock(&mu_);
  int64_t next = INT64_MAX;
  for (const auto& [id, entry] : entries_) {
    if (entry.state != ReservationState::kAborting) {
      next = std::min(next, entry.reservation->spec().lease_deadline_micros);
    }
  }
  return next;
}

}  // namespace tandem::kv
