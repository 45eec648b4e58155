#include "kv/sender.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "kv/auth.h"
#include "kv/internal/socket.h"
#include "kv/shared_segment.h"
#include "xxhash.h"
// Debian's libxxhash picks AVX2/AVX-512 at run time through these entry points.
#include "xxh_x86dispatch.h"

namespace tandem::kv {

struct KvSender::PeerConnection {
  std::string host;
  int port = 0;
  int fd = -1;
  uint64_t receiver_epoch = 0;
  std::unique_ptr<SharedSegment> segment;  // the receiver's segment, when mapped

  // The thread that streams this connection's transfers (one at a time), kept across transfers
  // so a transfer does not pay for starting one.
  void Start(std::function<void()> task) {
    absl::MutexLock lock(&mu);
    if (!thread.joinable()) thread = std::thread([this] { Loop(); });
    pending = std::move(task);
    running = true;
  }
  // Waits until the task given to Start returned.
  void Wait() {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](bool* running) { return !*running; }, &running));
  }

  ~PeerConnection() {
    {
      absl::MutexLock lock(&mu);
      closing = true;
    }
    if (thread.joinable()) thread.join();
    if (fd >= 0) ::close(fd);
  }

 private:
  void Loop() {
    while (true) {
      std::function<void()> task;
      {
        absl::MutexLock lock(&mu);
        mu.Await(absl::Condition(this, &PeerConnection::HasWork));
        if (pending == nullptr) return;  // closing
        task = std::move(pending);
        pending = nullptr;
      }
      task();
      absl::MutexLock lock(&mu);
      running = false;
    }
  }
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return pending != nullptr || closing; }

  absl::Mutex mu;
  std::thread thread;
  std::function<void()> pending ABSL_GUARDED_BY(mu);
  bool running ABSL_GUARDED_BY(mu) = false;
  bool closing ABSL_GUARDED_BY(mu) = false;
};

absl::Status ParseTransport(const std::string& text, Transport* transport) {
  std::string lower = absl::AsciiStrToLower(text);
  if (lower == "auto") {
    *transport = Transport::kAuto;
  } else if (lower == "tcp") {
    *transport = Transport::kTcp;
  } else if (lower == "shm" || lower == "shared-memory") {
    *transport = Transport::kSharedMemory;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("KV transport '", text, "' is not known (allowed: auto, tcp, shm)"));
  }
  return absl::OkStatus();
}

namespace {

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

absl::Status FromAbort(const AbortMessage& abort) {
  std::string message = absl::StrCat("decode worker refused the transfer (",
                                     RefusalCodeName(abort.code), "): ", abort.reason);
  switch (abort.code) {
    case RefusalCode::kStaleEpoch:
      return absl::FailedPreconditionError(message);
    case RefusalCode::kUnknownReservation:
      return absl::NotFoundError(message);
    case RefusalCode::kLeaseExpired:
      return absl::DeadlineExceededError(message);
    case RefusalCode::kShapeMismatch:
      return absl::InvalidArgumentError(message);
    case RefusalCode::kChecksumMismatch:
      return absl::DataLossError(message);
    case RefusalCode::kCancelled:
      return absl::CancelledError(message);
    default:
      return absl::UnavailableError(message);
  }
}

}  // namespace

class TransferImpl : public OutgoingTransfer {
 public:
  TransferImpl(KvSender* sender, std::unique_ptr<KvSender::PeerConnection> connection,
               BeginMessage begin, AcceptMessage accept)
      : sender_(sender),
        connection_(std::move(connection)),
        begin_(begin),
        accept_(std::move(accept)),
        start_(std::chrono::steady_clock::now()),
        wake_fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    connection_->Start([this] { Run(); });
  }

  ~TransferImpl() override {
    if (!ended_) Abort("transfer dropped by the prefill worker");
    ::close(wake_fd_);
  }

  bool shared_memory() const override { return accept_.shared_memory == 1; }

  void SendBlocks(uint32_t layer, uint32_t first_block,
                  std::vector<const uint8_t*> blocks) override {
    {
      absl::MutexLock lock(&mu_);
      queue_.push_back({layer, first_block, std::move(blocks)});
      if (!idle_) return;  // the sender thread is busy and takes it next
    }
    Wake();
  }

  absl::Status Finish(int32_t first_token) override {
    StopThread(/*drain=*/true);
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      status = failure_;
    }
    if (status.ok()) status = Exchange(EndMessage{begin_.reservation_id, first_token});
    ended_ = true;
    Report(status.ok());
    if (status.ok()) {
      sender_->Return(std::move(connection_));
    } else if (!receiver_aborted_) {
      SendAbort(std::string(status.message()));
    }
    return status;
  }

  void Abort(const std::string& reason) override {
    if (ended_) return;
    StopThread(/*drain=*/false);
    ended_ = true;
    Report(false);
    if (!receiver_aborted_) SendAbort(reason);
  }

 private:
  struct Job {
    uint32_t layer;
    uint32_t first_block;  // of the transfer
    std::vector<const uint8_t*> blocks;
  };

  void StopThread(bool drain) {
    {
      absl::MutexLock lock(&mu_);
      if (drain) {
        finishing_ = true;
      } else {
        aborting_ = true;
      }
    }
    Wake();
    if (!stopped_) connection_->Wait();
    stopped_ = true;
  }

  void Report(bool ok) {
    const KvSenderOptions& options = sender_->options_;
    if (options.metrics != nullptr) {
      options.metrics->TransferDone("send", shared_memory() ? "shm" : "tcp", bytes_sent_,
                                    SecondsSince(start_), ok);
    }
  }

  void SendAbort(const std::string& reason) {
    if (connection_ == nullptr) return;
    (void)internal::WriteFrame(
        connection_->fd, AbortMessage{begin_.reservation_id, RefusalCode::kSenderFailed, reason});
    connection_.reset();  // not reused: the receiver may still answer the aborted transfer
  }

  // Reads a frame the receiver sent unprompted (an Abort), without blocking.
  absl::Status CheckIncoming() {
    pollfd p{connection_->fd, POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) return absl::OkStatus();
    absl::StatusOr<internal::Frame> frame = internal::ReadFrame(connection_->fd);
    if (!frame.ok()) return frame.status();
    return HandleReceiverFrame(*frame);
  }

  absl::Status HandleReceiverFrame(const internal::Frame& frame) {
    if (frame.type == MessageType::kAbort) {
      const auto& abort = std::get<AbortMessage>(frame.message);
      receiver_aborted_ = true;
      // Acknowledge so the receiver knows no more bytes will land in its blocks.
      (void)internal::WriteFrame(connection_->fd, AbortAckMessage{abort.reservation_id});
      return FromAbort(abort);
    }
    if (frame.type == MessageType::kError) {
      const auto& error = std::get<ErrorMessage>(frame.message);
      receiver_aborted_ = true;
      return absl::UnavailableError(absl::StrCat("decode worker closed the KV connection (",
                                                 RefusalCodeName(error.code), "): ", error.reason));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected frame type ", static_cast<int>(frame.type), " from receiver"));
  }

  absl::Status Exchange(const Message& message) {
    absl::Status status = internal::WriteFrame(connection_->fd, message);
    if (!status.ok()) return status;
    internal::SetTimeouts(connection_->fd, sender_->options_.reply_timeout_ms, 10'000);
    absl::StatusOr<internal::Frame> frame = internal::ReadFrame(connection_->fd);
    internal::SetTimeouts(connection_->fd, 0, 10'000);
    if (!frame.ok()) return frame.status();
    if (frame->type == MessageType::kComplete) return absl::OkStatus();
    return HandleReceiverFrame(*frame);
  }

  absl::Status SendTcp(const Job& job) {
    const uint64_t bytes = begin_.layer_block_bytes;
    const uint32_t per_chunk = std::max<uint32_t>(1, sender_->options_.max_blocks_per_chunk);
    for (uint32_t first = 0; first < job.blocks.size(); first += per_chunk) {
      uint32_t count = std::min<uint32_t>(per_chunk, job.blocks.size() - first);
      uint64_t checksum;
      {
        XXH3_state_t* state = XXH3_createState();
        XXH3_64bits_reset(state);
        for (uint32_t i = 0; i < count; ++i)
          XXH3_64bits_update(state, job.blocks[first + i], bytes);
        checksum = XXH3_64bits_digest(state);
        XXH3_freeState(state);
      }
      ChunkMessage chunk{begin_.reservation_id, job.layer, job.first_block + first, count,
                         count * bytes,         checksum};
      std::string header = EncodeFrame(chunk);
      std::vector<iovec> iov;
      iov.reserve(count + 1);
      iov.push_back({header.data(), header.size()});
      for (uint32_t i = 0; i < count; ++i) {
        iov.push_back({const_cast<uint8_t*>(job.blocks[first + i]), bytes});
      }
      absl::Status status = internal::WriteAll(connection_->fd, std::move(iov));
      if (!status.ok()) return status;
      bytes_sent_ += count * bytes;
    }
    return absl::OkStatus();
  }

  absl::Status SendShared(const Job& job) {
    const uint64_t bytes = begin_.layer_block_bytes;
    const SharedSegment& segment = *connection_->segment;
    const bool hash = accept_.verify_checksums != 0;
    XXH3_state_t* state = XXH3_createState();
    XXH3_64bits_reset(state);
    for (uint32_t b = 0; b < job.blocks.size(); ++b) {
      uint64_t offset =
          accept_.block_offsets[job.first_block + b] + job.layer * accept_.layer_stride;
      if (offset < SharedSegment::kHeaderBytes || offset > segment.size() ||
          bytes > segment.size() - offset) {
        XXH3_freeState(state);
        return absl::InvalidArgumentError(absl::StrCat("receiver gave block offset ", offset,
                                                       " outside its segment of ", segment.size()));
      }
      if (!hash) {
        std::memcpy(segment.data() + offset, job.blocks[b], bytes);
        continue;
      }
      // Copy and hash in L1-sized pieces so the hash reads what the copy just brought in.
      constexpr uint64_t kPiece = 16 * 1024;
      for (uint64_t done = 0; done < bytes; done += kPiece) {
        uint64_t n = std::min(kPiece, bytes - done);
        std::memcpy(segment.data() + offset + done, job.blocks[b] + done, n);
        XXH3_64bits_update(state, job.blocks[b] + done, n);
      }
    }
    uint64_t checksum = hash ? XXH3_64bits_digest(state) : 0;
    XXH3_freeState(state);
    bytes_sent_ += job.blocks.size() * bytes;
    const ChunkMessage chunk{begin_.reservation_id,
                             job.layer,
                             job.first_block,
                             static_cast<uint32_t>(job.blocks.size()),
                             0,
                             checksum};
    if (!hash) {
      // Nothing to verify on the other side: the frames only tell it which blocks are in place,
      // so they go out together when the queue runs dry (one write, one wake-up).
      pending_frames_ += EncodeFrame(chunk);
      return absl::OkStatus();
    }
    return internal::WriteFrame(connection_->fd, chunk);
  }

  absl::Status FlushPending() {
    if (pending_frames_.empty()) return absl::OkStatus();
    std::string frames = std::move(pending_frames_);
    pending_frames_.clear();
    return internal::WriteAll(connection_->fd, {{frames.data(), frames.size()}});
  }

  void Run() {
    while (true) {
      Job job;
      bool have_job = false, finishing = false;
      {
        absl::MutexLock lock(&mu_);
        if (aborting_ || !failure_.ok()) return;
        idle_ = false;
        if (!queue_.empty()) {
          job = std::move(queue_.front());
          queue_.pop_front();
          have_job = true;
        } else {
          finishing = finishing_;
        }
      }
      absl::Status status;
      if (!have_job) status = FlushPending();
      if (status.ok() && finishing) return;
      if (status.ok() && !have_job) {
        {
          absl::MutexLock lock(&mu_);
          if (!queue_.empty() || finishing_ || aborting_) continue;
          idle_ = true;  // from here on SendBlocks wakes this thread
        }
        // Idle between layers: watch the socket too, so a receiver's Abort (lease expired,
        // request cancelled) is acknowledged at once and its blocks go back to the pool.
        pollfd fds[2] = {{connection_->fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) continue;
        if (fds[1].revents & POLLIN) {
          uint64_t count;
          (void)!::read(wake_fd_, &count, sizeof(count));
        }
        if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) status = CheckIncoming();
      } else if (status.ok()) {
        status = CheckIncoming();
        if (status.ok() && (job.blocks.empty() || job.first_block >= begin_.num_blocks ||
                            job.blocks.size() > begin_.num_blocks - job.first_block)) {
          status = absl::InvalidArgumentError(
              absl::StrCat("SendBlocks got blocks ", job.first_block, "+", job.blocks.size(),
                           "; the transfer has ", begin_.num_blocks));
        }
        if (status.ok() && job.layer >= begin_.num_layers) {
          status = absl::InvalidArgumentError(
              absl::StrCat("SendLayer: layer ", job.layer, " out of range"));
        }
        if (status.ok()) status = shared_memory() ? SendShared(job) : SendTcp(job);
      }
      if (!status.ok()) {
        absl::MutexLock lock(&mu_);
        failure_ = status;
        return;
      }
    }
  }

  void Wake() {
    uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof(one));
  }

  KvSender* const sender_;
  std::unique_ptr<KvSender::PeerConnection> connection_;
  const BeginMessage begin_;
  const AcceptMessage accept_;
  const std::chrono::steady_clock::time_point start_;
  const int wake_fd_;     // wakes the sender thread when work arrives
  bool stopped_ = false;  // Run has returned
  uint64_t bytes_sent_ = 0;
  bool ended_ = false;
  bool receiver_aborted_ = false;

  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool aborting_ ABSL_GUARDED_BY(mu_) = false;
  bool idle_ ABSL_GUARDED_BY(mu_) = false;  // the sender thread waits for work or the socket
  std::string pending_frames_;              // sender thread only
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
};

KvSender::KvSender(KvSenderOptions options) : options_(std::move(options)) {}

KvSender::~KvSender() = default;

absl::StatusOr<std::unique_ptr<KvSender::PeerConnection>> KvSender::Connect(const std::string& host,
                                                                            int port) {
  absl::StatusOr<int> fd = internal::Connect(host, port, options_.connect_timeout_ms);
  if (!fd.ok()) return fd.status();
  auto connection = std::make_unique<PeerConnection>();
  connection->host = host;
  connection->port = port;
  connection->fd = *fd;
  internal::SetTimeouts(*fd, options_.reply_timeout_ms, options_.reply_timeout_ms);
  absl::StatusOr<internal::Frame> frame = internal::ReadFrame(*fd);
  if (!frame.ok()) return Annotate(frame.status(), "KV handshake");
  if (frame->type == MessageType::kError) {
    const auto& error = std::get<ErrorMessage>(frame->message);
    return absl::UnavailableError(
        absl::StrCat("decode worker refused the KV connection: ", error.reason));
  }
  if (frame->type != MessageType::kServerHello) {
    return absl::InvalidArgumentError("KV handshake: expected ServerHello");
  }
  const auto& hello = std::get<ServerHelloMessage>(frame->message);
  connection->receiver_epoch = hello.receiver_epoch;
  bool try_shared = options_.transport != Transport::kTcp && !hello.segment_name.empty() &&
                    hello.host_id == HostId();
  if (try_shared) {
    absl::StatusOr<std::unique_ptr<SharedSegment>> segment =
        SharedSegment::Open(hello.segment_name, hello.segment_cookie);
    if (segment.ok()) connection->segment = std::move(*segment);
  }
  if (options_.transport == Transport::kSharedMemory && connection->segment == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("KV transport 'shm' requested but the decode worker at ", host, ":", port,
                     " has no shared segment this process can map (another host?)"));
  }
  ClientHelloMessage client;
  client.sender_epoch = options_.epoch;
  client.mac = ComputeMac(options_.token, hello.nonce, options_.epoch);
  client.mapped_segment = connection->segment != nullptr ? 1 : 0;
  absl::Status status = internal::WriteFrame(*fd, client);
  if (!status.ok()) return status;
  frame = internal::ReadFrame(*fd);
  if (!frame.ok()) return Annotate(frame.status(), "KV handshake");
  if (frame->type == MessageType::kError) {
    const auto& error = std::get<ErrorMessage>(frame->message);
    if (error.code == RefusalCode::kUnauthenticated) {
      return absl::UnauthenticatedError(
          "decode worker refused the KV connection: wrong cluster token");
    }
    return absl::UnavailableError(
        absl::StrCat("decode worker refused the KV connection: ", error.reason));
  }
  if (frame->type != MessageType::kHelloOk) {
    return absl::InvalidArgumentError("KV handshake: expected HelloOk");
  }
  internal::SetTimeouts(*fd, 0, 10'000);
  return connection;
}

void KvSender::Return(std::unique_ptr<PeerConnection> connection) {
  absl::MutexLock lock(&mu_);
  if (idle_.size() < 64) idle_.push_back(std::move(connection));
}

absl::StatusOr<std::unique_ptr<OutgoingTransfer>> KvSender::Begin(const std::string& host, int port,
                                                                  const BeginMessage& begin) {
  std::unique_ptr<PeerConnection> connection;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = idle_.begin(); it != idle_.end(); ++it) {
      if ((*it)->host == host && (*it)->port == port) {
        connection = std::move(*it);
        idle_.erase(it);
        break;
      }
    }
  }
  // A pooled connection may have been closed by a restarted receiver: then reconnect once.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (connection == nullptr) {
      absl::StatusOr<std::unique_ptr<PeerConnection>> fresh = Connect(host, port);
      if (!fresh.ok()) return fresh.status();
      connection = std::move(*fresh);
      attempt = 1;
    }
    BeginMessage message = begin;
    message.want_shared_memory = connection->segment != nullptr ? 1 : 0;
    absl::Status status = internal::WriteFrame(connection->fd, message);
    absl::StatusOr<internal::Frame> frame = absl::UnavailableError("not sent");
    if (status.ok()) {
      internal::SetTimeouts(connection->fd, options_.reply_timeout_ms, 10'000);
      frame = internal::ReadFrame(connection->fd);
      internal::SetTimeouts(connection->fd, 0, 10'000);
    } else {
      frame = status;
    }
    if (!frame.ok()) {
      if (attempt == 0) {
        connection.reset();
        continue;
      }
      return Annotate(frame.status(), "KV Begin");
    }
    if (frame->type == MessageType::kAbort) {
      absl::Status refused = FromAbort(std::get<AbortMessage>(frame->message));
      Return(std::move(connection));  // a refusal leaves the connection usable
      return refused;
    }
    if (frame->type != MessageType::kAccept) {
      return absl::InvalidArgumentError("KV Begin: expected Accept or Abort");
    }
    AcceptMessage accept = std::get<AcceptMessage>(std::move(frame->message));
    if (accept.shared_memory == 1 &&
        (connection->segment == nullptr || accept.block_offsets.size() != begin.num_blocks)) {
      return absl::InvalidArgumentError("KV Accept: shared-memory offsets do not match");
    }
    return std::unique_ptr<OutgoingTransfer>(
        new TransferImpl(this, std::move(connection), begin, std::move(accept)));
  }
  return absl::UnavailableError("KV Begin failed");
}

}  // namespace tandem::kv
