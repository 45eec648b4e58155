#include "kv/receiver.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/logging.h"
#include "kv/auth.h"
#include "kv/internal/socket.h"
#include "xxhash.h"
// Debian's libxxhash picks AVX2/AVX-512 at run time through these entry points.
#include "xxh_x86dispatch.h"

namespace tandem::kv {
namespace {

using internal::ReadFrame;
using internal::WriteFrame;

struct Connection {
  uint64_t id = 0;
  int fd = -1;
  absl::Mutex write_mu;
  std::thread thread;
  std::atomic<bool> finished{false};
  std::atomic<bool> shared_memory_transfer{false};  // the current transfer writes via the segment
  std::atomic<uint64_t> aborting{0};                // reservation the receiver aborted, if any

  absl::Status Send(const Message& message) {
    absl::MutexLock lock(&write_mu);
    return WriteFrame(fd, message);
  }
};

class ReceiverImpl : public KvReceiver {
 public:
  ReceiverImpl(KvReceiverOptions options, ReservationTable* table, Env& env, int listen_fd,
               int port)
      : options_(std::move(options)), table_(table), env_(env), listen_fd_(listen_fd), port_(port) {
    accept_thread_ = std::thread([this] { AcceptLoop(); });
    reaper_thread_ = std::thread([this] { ReaperLoop(); });
  }

  ~ReceiverImpl() override { Stop(); }

  int port() const override { return port_; }

  void Cancel(uint64_t reservation_id) override {
    uint64_t connection = 0;
    if (!table_->Cancel(reservation_id, &connection) || connection == 0) return;
    AbortTransfer(reservation_id, connection,
                  absl::CancelledError(absl::StrCat("reservation ", reservation_id,
                                                    " was cancelled by the decode worker")),
                  RefusalCode::kCancelled);
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      stopping_ = true;
      cv_.Signal();
    }
    ::shutdown(listen_fd_, SHUT_RDWR);
    if (accept_thread_.joinable()) accept_thread_.join();
    ::close(listen_fd_);
    std::map<uint64_t, std::shared_ptr<Connection>> connections;
    {
      absl::MutexLock lock(&mu_);
      connections.swap(connections_);
    }
    for (auto& [id, connection] : connections) ::shutdown(connection->fd, SHUT_RDWR);
    for (auto& [id, connection] : connections) {
      if (connection->thread.joinable()) connection->thread.join();
      ::close(connection->fd);
    }
    if (reaper_thread_.joinable()) reaper_thread_.join();
  }

 private:
  void AcceptLoop() {
    while (true) {
      pollfd p{listen_fd_, POLLIN, 0};
      int ready = ::poll(&p, 1, 200);
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      if (ready <= 0) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      internal::SetNoDelay(fd);
      auto connection = std::make_shared<Connection>();
      connection->fd = fd;
      absl::MutexLock lock(&mu_);
      if (static_cast<int>(connections_.size()) >= options_.max_connections) {
        (void)WriteFrame(
            fd, ErrorMessage{RefusalCode::kShuttingDown, "too many KV connections; retry later"});
        ::close(fd);
        continue;
      }
      connection->id = ++next_connection_id_;
      connections_[connection->id] = connection;
      connection->thread = std::thread([this, connection] {
        Serve(*connection);
        connection->finished = true;
      });
    }
  }

  void ReaperLoop() {
    absl::MutexLock lock(&mu_);
    while (!stopping_) {
      int64_t now = env_.NowMicros();
      int64_t wait_micros = std::clamp<int64_t>(table_->NextDeadline() - now, 1000, 50'000);
      cv_.WaitWithTimeout(&mu_, absl::Microseconds(wait_micros));
      if (stopping_) break;
      // Join connections that ended.
      for (auto it = connections_.begin(); it != connections_.end();) {
        if (it->second->finished) {
          it->second->thread.join();
          ::close(it->second->fd);
          it = connections_.erase(it);
        } else {
          ++it;
        }
      }
      mu_.Unlock();
      int unclaimed = 0;
      auto claimed = table_->ExpireDue(env_.NowMicros(), &unclaimed);
      if (options_.metrics != nullptr) {
        for (int i = 0; i < unclaimed; ++i) options_.metrics->LeaseExpired();
      }
      for (const auto& [reservation, connection] : claimed) {
        if (options_.metrics != nullptr) options_.metrics->LeaseExpired();
        AbortTransfer(reservation, connection,
                      absl::DeadlineExceededError(absl::StrCat(
                          "reservation ", reservation, ": lease expired during the transfer")),
                      RefusalCode::kLeaseExpired);
      }
      mu_.Lock();
    }
  }

  std::shared_ptr<Connection> FindConnection(uint64_t id) {
    absl::MutexLock lock(&mu_);
    auto it = connections_.find(id);
    return it == connections_.end() ? nullptr : it->second;
  }

  // Ends a transfer the receiver gave up on. Blocks are freed once the sender can no longer
  // write into them: at once for TCP (only this process writes, and the socket is shut), after
  // the sender's AbortAck or the connection's end for shared memory.
  void AbortTransfer(uint64_t reservation, uint64_t connection_id, absl::Status status,
                     RefusalCode code) {
    std::shared_ptr<Connection> connection = FindConnection(connection_id);
    std::string reason(status.message());
    if (!table_->Fail(reservation, std::move(status), /*wait_for_sender=*/true)) return;
    if (connection == nullptr) {
      table_->ReleaseAborted(reservation);
      return;
    }
    connection->aborting = reservation;
    (void)connection->Send(AbortMessage{reservation, code, reason});
    if (!connection->shared_memory_transfer) ::shutdown(connection->fd, SHUT_RDWR);
    if (options_.metrics != nullptr) options_.metrics->Refused(code);
  }

  void Refuse(Connection& connection, RefusalCode code, const std::string& reason) {
    LogWarn("kv: refused peer", {{"reason", RefusalCodeName(code)}, {"detail", reason}});
    if (options_.metrics != nullptr) options_.metrics->Refused(code);
    (void)connection.Send(ErrorMessage{code, reason});
  }

  void Serve(Connection& connection) {
    internal::SetTimeouts(connection.fd, options_.handshake_timeout_ms,
                          options_.handshake_timeout_ms);
    ServerHelloMessage hello;
    hello.receiver_epoch = table_->epoch();
    hello.nonce = RandomNonce();
    hello.host_id = HostId();
    if (options_.segment != nullptr) {
      hello.segment_name = options_.segment->name();
      hello.segment_cookie = options_.segment->cookie();
    }
    if (!connection.Send(hello).ok()) return;
    absl::StatusOr<internal::Frame> frame = ReadFrame(connection.fd);
    if (!frame.ok() || frame->type != MessageType::kClientHello) {
      Refuse(connection, RefusalCode::kBadMessage,
             frame.ok() ? "expected ClientHello" : std::string(frame.status().message()));
      return;
    }
    const auto& client = std::get<ClientHelloMessage>(frame->message);
    if (!MacEquals(client.mac, ComputeMac(options_.token, hello.nonce, client.sender_epoch))) {
      Refuse(connection, RefusalCode::kUnauthenticated, "wrong cluster token");
      return;
    }
    bool mapped = client.mapped_segment != 0 && options_.segment != nullptr;
    if (!connection.Send(HelloOkMessage{}).ok()) return;
    internal::SetTimeouts(connection.fd, 0, 10'000);

    std::shared_ptr<Reservation> current;
    int64_t begin_micros = 0;
    absl::Status end;
    while (true) {
      frame = ReadFrame(connection.fd);
      if (!frame.ok()) {
        if (frame.status().code() == absl::StatusCode::kInvalidArgument) {
          Refuse(connection, RefusalCode::kBadMessage, std::string(frame.status().message()));
        }
        end = frame.status();
        break;
      }
      absl::Status status = Handle(connection, *frame, mapped, &current, &begin_micros);
      if (!status.ok()) {
        end = status;
        break;
      }
    }
    table_->FailConnection(connection.id,
                           absl::UnavailableError(absl::StrCat(
                               "KV sender connection ended mid-transfer: ", end.message())));
    if (current != nullptr && options_.metrics != nullptr) {
      options_.metrics->TransferDone("receive", connection.shared_memory_transfer ? "shm" : "tcp",
                                     current->received_bytes(),
                                     (env_.NowMicros() - begin_micros) / 1e6, false);
    }
  }

  // Handles one frame; a non-OK return closes the connection.
  absl::Status Handle(Connection& connection, internal::Frame& frame, bool mapped,
                      std::shared_ptr<Reservation>* current, int64_t* begin_micros) {
    switch (frame.type) {
      case MessageType::kBegin: {
        const auto& begin = std::get<BeginMessage>(frame.message);
        if (*current != nullptr) {
          Refuse(connection, RefusalCode::kBadMessage, "Begin while a transfer is open");
          return absl::InvalidArgumentError("Begin while a transfer is open");
        }
        RefusalCode code = RefusalCode::kUnknown;
        absl::StatusOr<std::shared_ptr<Reservation>> claimed =
            table_->Claim(begin, connection.id, env_.NowMicros(), &code);
        if (!claimed.ok()) {
          if (options_.metrics != nullptr) options_.metrics->Refused(code);
          LogWarn("kv: transfer refused",
                  {{"reservation", begin.reservation_id}, {"reason", RefusalCodeName(code)}});
          return connection.Send(
              AbortMessage{begin.reservation_id, code, std::string(claimed.status().message())});
        }
        AcceptMessage accept;
        accept.reservation_id = begin.reservation_id;
        if (begin.want_shared_memory && mapped &&
            (*claimed)->spec().target->SharedOffsets(&accept.block_offsets, &accept.layer_stride)) {
          accept.shared_memory = 1;
          accept.verify_checksums = options_.verify_shared_memory_checksums ? 1 : 0;
        } else {
          accept.block_offsets.clear();
          accept.layer_stride = 0;
        }
        connection.shared_memory_transfer = accept.shared_memory == 1;
        connection.aborting = 0;
        *current = std::move(*claimed);
        *begin_micros = env_.NowMicros();
        return connection.Send(accept);
      }
      case MessageType::kChunk: {
        const auto& chunk = std::get<ChunkMessage>(frame.message);
        Reservation* reservation = current->get();
        if (reservation == nullptr || chunk.reservation_id != reservation->id()) {
          Refuse(connection, RefusalCode::kBadMessage, "Chunk outside a transfer");
          return absl::InvalidArgumentError("Chunk outside a transfer");
        }
        const ReservationSpec& spec = reservation->spec();
        bool shm = connection.shared_memory_transfer;
        uint64_t bytes = static_cast<uint64_t>(chunk.block_count) * spec.layer_block_bytes;
        if (chunk.layer >= spec.num_layers || chunk.block_count == 0 ||
            chunk.first_block >= spec.num_blocks ||
            chunk.block_count > spec.num_blocks - chunk.first_block ||
            chunk.payload_length != (shm ? 0 : bytes)) {
          Refuse(connection, RefusalCode::kShapeMismatch, "Chunk out of the reservation's range");
          return absl::InvalidArgumentError("Chunk out of range");
        }
        if (connection.aborting == reservation->id()) return absl::OkStatus();  // drained
        XXH3_state_t* state = XXH3_createState();
        XXH3_64bits_reset(state);
        if (!shm) {
          std::vector<iovec> iov;
          iov.reserve(chunk.block_count);
          for (uint32_t b = chunk.first_block; b < chunk.first_block + chunk.block_count; ++b) {
            iov.push_back({spec.target->LayerBlock(chunk.layer, b), spec.layer_block_bytes});
          }
          absl::Status status = internal::ReadFullV(connection.fd, iov);
          if (!status.ok()) {
            XXH3_freeState(state);
            return status;
          }
        }
        if (!shm || options_.verify_shared_memory_checksums) {
          for (uint32_t b = chunk.first_block; b < chunk.first_block + chunk.block_count; ++b) {
            XXH3_64bits_update(state, spec.target->LayerBlock(chunk.layer, b),
                               spec.layer_block_bytes);
          }
          uint64_t checksum = XXH3_64bits_digest(state);
          if (checksum != chunk.checksum) {
            XXH3_freeState(state);
            AbortTransfer(reservation->id(), connection.id,
                          absl::DataLossError(absl::StrCat(
                              "reservation ", reservation->id(), ": layer ", chunk.layer,
                              " blocks ", chunk.first_block, "+", chunk.block_count,
                              " arrived corrupted (checksum mismatch)")),
                          RefusalCode::kChecksumMismatch);
            return shm ? absl::OkStatus() : absl::DataLossError("checksum mismatch");
          }
        }
        XXH3_freeState(state);
        reservation->MarkReceived(chunk.layer, chunk.first_block, chunk.block_count);
        return absl::OkStatus();
      }
      case MessageType::kEnd: {
        const auto& end = std::get<EndMessage>(frame.message);
        Reservation* reservation = current->get();
        if (reservation == nullptr || end.reservation_id != reservation->id()) {
          Refuse(connection, RefusalCode::kBadMessage, "End outside a transfer");
          return absl::InvalidArgumentError("End outside a transfer");
        }
        if (connection.aborting == reservation->id()) return absl::OkStatus();
        uint64_t id = reservation->id();
        uint64_t bytes = reservation->received_bytes();
        bool shm = connection.shared_memory_transfer;
        double seconds = (env_.NowMicros() - *begin_micros) / 1e6;
        if (!reservation->AllReceived()) {
          AbortTransfer(id, connection.id,
                        absl::DataLossError(absl::StrCat(
                            "reservation ", id, ": sender ended before sending every block")),
                        RefusalCode::kIncomplete);
          if (!shm) return absl::DataLossError("incomplete transfer");
          return absl::OkStatus();
        }
        current->reset();
        if (!table_->Complete(id, end.first_token)) {
          return connection.Send(
              AbortMessage{id, RefusalCode::kLeaseExpired, "reservation ended before completion"});
        }
        if (options_.metrics != nullptr) {
          options_.metrics->TransferDone("receive", shm ? "shm" : "tcp", bytes, seconds, true);
        }
        return connection.Send(CompleteMessage{id});
      }
      case MessageType::kAbort: {
        const auto& abort = std::get<AbortMessage>(frame.message);
        if (*current != nullptr && abort.reservation_id == (*current)->id()) {
          // The sender stopped writing before it sent Abort: the blocks can go back at once.
          table_->ReleaseAborted(abort.reservation_id);
          table_->Fail(abort.reservation_id,
                       absl::UnavailableError(
                           absl::StrCat("prefill worker aborted the transfer: ", abort.reason)));
          current->reset();
        }
        return absl::OkStatus();
      }
      case MessageType::kAbortAck: {
        const auto& ack = std::get<AbortAckMessage>(frame.message);
        table_->ReleaseAborted(ack.reservation_id);
        if (*current != nullptr && ack.reservation_id == (*current)->id()) current->reset();
        connection.aborting = 0;
        return absl::OkStatus();
      }
      default:
        Refuse(connection, RefusalCode::kBadMessage,
               absl::StrCat("unexpected frame type ", static_cast<int>(frame.type)));
        return absl::InvalidArgumentError("unexpected frame");
    }
  }

  const KvReceiverOptions options_;
  ReservationTable* const table_;
  Env& env_;
  const int listen_fd_;
  const int port_;
  std::thread accept_thread_;
  std::thread reaper_thread_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t next_connection_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

absl::StatusOr<std::unique_ptr<KvReceiver>> KvReceiver::Start(KvReceiverOptions options,
                                                              ReservationTable* table, Env& env) {
  if (options.token.empty()) {
    return absl::InvalidArgumentError(
        "the KV receiver needs a cluster token (--cluster-token or TANDEM_CLUSTER_TOKEN)");
  }
  int port = 0;
  absl::StatusOr<int> fd = internal::Listen(options.host, options.port, &port);
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<KvReceiver>(new ReceiverImpl(std::move(options), table, env, *fd, port));
}

}  // namespace tandem::kv
