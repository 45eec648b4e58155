// End-to-end KV transfers between a KvSender and a KvReceiver in one process, over loopback TCP
// and over a shared-memory segment, including the failure paths.
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <future>
#include <thread>

#include "core/env.h"
#include "core/kv_type.h"
#include "gtest/gtest.h"
#include "kv/auth.h"
#include "kv/internal/socket.h"
#include "kv/receiver.h"
#include "kv/sender.h"
#include "kv/shared_segment.h"
#include "xxhash.h"

namespace tandem::kv {
namespace {

constexpr uint32_t kLayers = 4;
constexpr uint32_t kBlocks = 5;
constexpr uint64_t kLayerBlockBytes = 4096;
constexpr char kToken[] = "cluster-secret";

// Reserved blocks laid out block-major: block b, layer l at b * block_stride + l * layer_stride.
class TestTarget : public KvTarget {
 public:
  TestTarget(uint8_t* base, uint64_t base_offset_in_segment, bool shared)
      : base_(base), base_offset_(base_offset_in_segment), shared_(shared) {}
  uint8_t* LayerBlock(uint32_t layer, uint32_t block) override {
    return base_ + Offset(layer, block);
  }
  bool SharedOffsets(std::vector<uint64_t>* offsets, uint64_t* layer_stride) override {
    if (!shared_) return false;
    offsets->clear();
    for (uint32_t b = 0; b < kBlocks; ++b) offsets->push_back(base_offset_ + Offset(0, b));
    *layer_stride = kLayerBlockBytes;
    return true;
  }
  static uint64_t Offset(uint32_t layer, uint32_t block) {
    return (static_cast<uint64_t>(block) * kLayers + layer) * kLayerBlockBytes;
  }
  static constexpr uint64_t kBytes = kLayers * kBlocks * kLayerBlockBytes;

 private:
  uint8_t* base_;
  uint64_t base_offset_;
  bool shared_;
};

// The prefill side's own blocks, filled with a pattern that depends on (layer, block).
struct SourceBlocks {
  std::vector<std::vector<uint8_t>> data;  // [layer * kBlocks + block]
  SourceBlocks() {
    for (uint32_t l = 0; l < kLayers; ++l) {
      for (uint32_t b = 0; b < kBlocks; ++b) {
        std::vector<uint8_t> bytes(kLayerBlockBytes);
        for (size_t i = 0; i < bytes.size(); ++i)
          bytes[i] = static_cast<uint8_t>(i * 7 + l * 31 + b);
        data.push_back(std::move(bytes));
      }
    }
  }
  std::vector<const uint8_t*> Layer(uint32_t layer) const {
    std::vector<const uint8_t*> blocks;
    for (uint32_t b = 0; b < kBlocks; ++b) blocks.push_back(data[layer * kBlocks + b].data());
    return blocks;
  }
};

struct Done {
  std::promise<std::pair<absl::Status, int32_t>> promise;
  std::future<std::pair<absl::Status, int32_t>> future = promise.get_future();
  std::pair<absl::Status, int32_t> Wait() {
    EXPECT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return future.get();
  }
};

class TransferTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    shared_ = GetParam();
    if (shared_) {
      auto segment = SharedSegment::Create(TestTarget::kBytes * 4);
      ASSERT_TRUE(segment.ok()) << segment.status();
      segment_ = std::move(*segment);
    } else {
      heap_.resize(TestTarget::kBytes * 4);
    }
    table_ = std::make_unique<ReservationTable>(epoch_);
    KvReceiverOptions options;
    options.token = kToken;
    options.segment = segment_.get();
    options.metrics = &metrics_;
    options.verify_shared_memory_checksums = true;  // off by default; these tests check it
    receiver_options_ = options;
    auto receiver = KvReceiver::Start(options, table_.get(), Env::Default());
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = std::move(*receiver);
    sender_ = std::make_unique<KvSender>(
        KvSenderOptions{.token = kToken, .epoch = 99, .metrics = &metrics_});
  }

  void TearDown() override {
    receiver_->Stop();
    EXPECT_EQ(table_->Stats().active, 0u) << "reservations left behind";
  }

  // Reserves region `slot` of the test memory.
  uint64_t Reserve(int slot, Done* done, int64_t lease_ms = 5000, uint8_t kv_type = 0) {
    uint8_t* base;
    uint64_t offset = 0;
    if (shared_) {
      offset = SharedSegment::kHeaderBytes + slot * TestTarget::kBytes;
      base = segment_->data() + offset;
    } else {
      base = heap_.data() + slot * TestTarget::kBytes;
    }
    std::memset(base, 0, TestTarget::kBytes);
    target_base_[slot] = base;
    ReservationSpec spec;
    spec.num_layers = kLayers;
    spec.num_blocks = kBlocks;
    spec.layer_block_bytes = kLayerBlockBytes;
    spec.kv_type = kv_type;
    spec.lease_deadline_micros = Env::Default().NowMicros() + lease_ms * 1000;
    spec.target = std::make_shared<TestTarget>(base, offset, shared_);
    spec.on_done = [done](absl::Status status, int32_t first) {
      done->promise.set_value({status, first});
    };
    return table_->Add(std::move(spec));
  }

  BeginMessage BeginFor(uint64_t id) {
    return BeginMessage{id, epoch_, kLayers, kBlocks, kLayerBlockBytes, 0};
  }

  void ExpectFilled(int slot) {
    TestTarget target(target_base_[slot], 0, false);
    for (uint32_t l = 0; l < kLayers; ++l) {
      for (uint32_t b = 0; b < kBlocks; ++b) {
        ASSERT_EQ(std::memcmp(target.LayerBlock(l, b), source_.data[l * kBlocks + b].data(),
                              kLayerBlockBytes),
                  0)
            << "layer " << l << " block " << b;
      }
    }
  }

  bool shared_ = false;
  KvReceiverOptions receiver_options_;
  const uint64_t epoch_ = 1234;
  MetricsRegistry registry_;
  KvMetrics metrics_{registry_};
  std::unique_ptr<SharedSegment> segment_;
  std::vector<uint8_t> heap_;
  std::unique_ptr<ReservationTable> table_;
  std::unique_ptr<KvReceiver> receiver_;
  std::unique_ptr<KvSender> sender_;
  SourceBlocks source_;
  std::map<int, uint8_t*> target_base_;
};

TEST_P(TransferTest, LayerWiseTransferFillsReservationExactly) {
  for (int round = 0; round < 3; ++round) {  // the pooled connection is reused
    Done done;
    uint64_t id = Reserve(round, &done);
    auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    EXPECT_EQ((*transfer)->shared_memory(), shared_);
    for (uint32_t l = 0; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
    ASSERT_TRUE((*transfer)->Finish(151).ok());
    auto [status, first] = done.Wait();
    EXPECT_TRUE(status.ok()) << status;
    EXPECT_EQ(first, 151);
    ExpectFilled(round);
  }
  std::string text = registry_.RenderPrometheus();
  std::string transport = shared_ ? "shm" : "tcp";
  EXPECT_NE(text.find("tandem_kv_transfers_total{side=\"receive\",transport=\"" + transport +
                      "\",outcome=\"ok\"} 3"),
            std::string::npos)
      << text;
}

TEST_P(TransferTest, ChunkWiseSendsInAnyPieceOrderFillTheReservation) {
  // What a chunked prefill does: each chunk pushes the blocks it made final, layer by layer.
  Done done;
  uint64_t id = Reserve(0, &done);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  const uint32_t pieces[][2] = {{0, 1}, {1, kBlocks - 2}, {kBlocks - 1, 1}};
  for (const auto& piece : pieces) {
    for (uint32_t l = 0; l < kLayers; ++l) {
      std::vector<const uint8_t*> all = source_.Layer(l);
      (*transfer)->SendBlocks(l, piece[0],
                              {all.begin() + piece[0], all.begin() + piece[0] + piece[1]});
    }
  }
  ASSERT_TRUE((*transfer)->Finish(7).ok());
  auto [status, first] = done.Wait();
  EXPECT_TRUE(status.ok()) << status;
  ExpectFilled(0);
}

TEST_P(TransferTest, MissingOrOutOfRangeBlocksFailTheTransfer) {
  {
    Done done;
    uint64_t id = Reserve(0, &done);
    auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    for (uint32_t l = 0; l < kLayers; ++l) {
      std::vector<const uint8_t*> all = source_.Layer(l);
      (*transfer)->SendBlocks(l, 0, {all.begin(), all.end() - 1});  // the last block never goes
    }
    EXPECT_FALSE((*transfer)->Finish(7).ok());
    EXPECT_EQ(done.Wait().first.code(), absl::StatusCode::kDataLoss);
  }
  {
    Done done;
    uint64_t id = Reserve(1, &done);
    auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    std::vector<const uint8_t*> all = source_.Layer(0);
    (*transfer)->SendBlocks(0, kBlocks - 1, all);  // past the reservation's end
    absl::Status finished = (*transfer)->Finish(7);
    EXPECT_EQ(finished.code(), absl::StatusCode::kInvalidArgument) << finished;
    EXPECT_FALSE(done.Wait().first.ok());
  }
}

TEST_P(TransferTest, SharedMemoryWithoutVerificationCopiesTheSameBytes) {
  // The decode worker's default: shared-memory chunks are copied without checksums.
  receiver_->Stop();
  KvReceiverOptions options = receiver_options_;
  options.verify_shared_memory_checksums = false;
  auto receiver = KvReceiver::Start(options, table_.get(), Env::Default());
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  receiver_ = std::move(*receiver);
  KvSender sender(KvSenderOptions{.token = kToken, .epoch = 99});
  for (int round = 0; round < 2; ++round) {
    Done done;
    uint64_t id = Reserve(round, &done);
    auto transfer = sender.Begin("127.0.0.1", receiver_->port(), BeginFor(id));
    ASSERT_TRUE(transfer.ok()) << transfer.status();
    EXPECT_EQ((*transfer)->shared_memory(), shared_);
    for (uint32_t l = 0; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
    ASSERT_TRUE((*transfer)->Finish(3).ok());
    auto [status, first] = done.Wait();
    EXPECT_TRUE(status.ok()) << status;
    ExpectFilled(round);
  }
}

TEST_P(TransferTest, WrongTokenIsRefused) {
  KvSender intruder(KvSenderOptions{.token = "guess", .epoch = 5});
  Done done;
  uint64_t id = Reserve(0, &done, 200);
  auto transfer = intruder.Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  EXPECT_EQ(transfer.status().code(), absl::StatusCode::kUnauthenticated) << transfer.status();
  EXPECT_EQ(done.Wait().first.code(), absl::StatusCode::kDeadlineExceeded);  // lease frees it
}

TEST_P(TransferTest, StaleEpochAndUnknownReservationAreRefusedConnectionStaysUsable) {
  Done done;
  uint64_t id = Reserve(0, &done);
  BeginMessage stale = BeginFor(id);
  stale.receiver_epoch = epoch_ - 1;  // the decode worker restarted since
  EXPECT_EQ(sender_->Begin("127.0.0.1", receiver_->port(), stale).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id + 1)).status().code(),
            absl::StatusCode::kNotFound);
  BeginMessage shape = BeginFor(id);
  shape.layer_block_bytes = 8;
  EXPECT_EQ(sender_->Begin("127.0.0.1", receiver_->port(), shape).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  for (uint32_t l = 0; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
  EXPECT_TRUE((*transfer)->Finish(1).ok());
  EXPECT_TRUE(done.Wait().first.ok());
}

// A prefill worker with another KV element type than the decode worker's is refused with both
// types named, even where the byte shapes happen to agree; the same types then go through.
TEST_P(TransferTest, KvTypeMismatchIsRefusedNamingBothTypes) {
  Done done;
  const uint8_t bf16 = static_cast<uint8_t>(KvType::kBF16);
  uint64_t id = Reserve(0, &done, 5000, bf16);
  for (uint8_t sender_type : {uint8_t{0}, static_cast<uint8_t>(KvType::kF32)}) {
    BeginMessage begin = BeginFor(id);
    begin.kv_type = sender_type;
    auto refused = sender_->Begin("127.0.0.1", receiver_->port(), begin);
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument) << refused.status();
    const std::string message(refused.status().message());
    EXPECT_NE(message.find("holds bf16 KV"), std::string::npos) << message;
    EXPECT_NE(message.find(std::string("sender's KV is ") + KvTypeCodeName(sender_type)),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("--kv-dtype"), std::string::npos) << message;
  }
  BeginMessage begin = BeginFor(id);
  begin.kv_type = bf16;
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), begin);
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  for (uint32_t l = 0; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
  EXPECT_TRUE((*transfer)->Finish(1).ok());
  EXPECT_TRUE(done.Wait().first.ok());
  ExpectFilled(0);
}

TEST_P(TransferTest, LeaseExpiryMidTransferFreesBlocksAndFailsSender) {
  Done done;
  uint64_t id = Reserve(0, &done, 300);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->SendLayer(0, source_.Layer(0));
  auto [status, first] = done.Wait();  // the sender stalls: the lease runs out
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded) << status;
  (*transfer)->SendLayer(1, source_.Layer(1));
  EXPECT_FALSE((*transfer)->Finish(1).ok());
  EXPECT_EQ(table_->Stats().expired, 1u);
}

TEST_P(TransferTest, DecodeSideCancelAbortsTheSender) {
  Done done;
  uint64_t id = Reserve(0, &done);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->SendLayer(0, source_.Layer(0));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  receiver_->Cancel(id);
  for (uint32_t l = 1; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
  absl::Status finish = (*transfer)->Finish(1);
  EXPECT_FALSE(finish.ok());
  auto [status, first] = done.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
}

TEST_P(TransferTest, SenderAbortReleasesAtOnce) {
  Done done;
  uint64_t id = Reserve(0, &done);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  (*transfer)->SendLayer(0, source_.Layer(0));
  (*transfer)->Abort("prefill failed");
  auto [status, first] = done.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_NE(status.message().find("prefill failed"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Transports, TransferTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "SharedMemory" : "Tcp"; });

// A hand-driven peer, to send what a well-behaved sender never would.
class RawPeer {
 public:
  explicit RawPeer(int port) {
    auto fd = internal::Connect("127.0.0.1", port, 1000);
    EXPECT_TRUE(fd.ok());
    fd_ = *fd;
    auto hello = internal::ReadFrame(fd_);
    EXPECT_TRUE(hello.ok());
    auto server = std::get<ServerHelloMessage>(hello->message);
    epoch_ = server.receiver_epoch;
    ClientHelloMessage client;
    client.sender_epoch = 3;
    client.mac = ComputeMac(kToken, server.nonce, 3);
    EXPECT_TRUE(internal::WriteFrame(fd_, client).ok());
    EXPECT_EQ(internal::ReadFrame(fd_)->type, MessageType::kHelloOk);
  }
  ~RawPeer() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }
  uint64_t epoch() const { return epoch_; }

 private:
  int fd_ = -1;
  uint64_t epoch_ = 0;
};

class RawTransferTest : public TransferTest {};

TEST_P(RawTransferTest, CorruptedChunkFailsTheTransfer) {
  Done done;
  uint64_t id = Reserve(0, &done);
  RawPeer peer(receiver_->port());
  ASSERT_TRUE(internal::WriteFrame(peer.fd(), BeginFor(id)).ok());
  ASSERT_EQ(internal::ReadFrame(peer.fd())->type, MessageType::kAccept);
  std::vector<uint8_t> payload(kBlocks * kLayerBlockBytes, 0x5a);
  uint64_t checksum = XXH3_64bits(payload.data(), payload.size()) ^ 1;  // wrong
  std::string frame = EncodeFrame(ChunkMessage{id, 0, 0, kBlocks, payload.size(), checksum});
  ASSERT_TRUE(internal::WriteAll(peer.fd(),
                                 {{frame.data(), frame.size()}, {payload.data(), payload.size()}})
                  .ok());
  auto [status, first] = done.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
}

TEST_P(RawTransferTest, SenderVanishingMidTransferFreesTheReservation) {
  Done done;
  uint64_t id = Reserve(0, &done);
  RawPeer peer(receiver_->port());
  ASSERT_TRUE(internal::WriteFrame(peer.fd(), BeginFor(id)).ok());
  ASSERT_EQ(internal::ReadFrame(peer.fd())->type, MessageType::kAccept);
  // Half a chunk, then the process "dies".
  std::string frame = EncodeFrame(ChunkMessage{id, 0, 0, kBlocks, kBlocks * kLayerBlockBytes, 0});
  ASSERT_TRUE(internal::WriteAll(peer.fd(), {{frame.data(), frame.size()}}).ok());
  peer.Close();
  auto [status, first] = done.Wait();
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
}

TEST_P(RawTransferTest, MalformedFramesCloseOnlyThatConnection) {
  {
    RawPeer peer(receiver_->port());
    std::string garbage = "GET / HTTP/1.1\r\n\r\n";
    ASSERT_TRUE(internal::WriteAll(peer.fd(), {{garbage.data(), garbage.size()}}).ok());
    char byte;
    // The receiver answers with an Error frame and closes.
    auto frame = internal::ReadFrame(peer.fd());
    EXPECT_TRUE(frame.ok() && frame->type == MessageType::kError);
    EXPECT_LE(::recv(peer.fd(), &byte, 1, 0), 0);
  }
  {
    RawPeer peer(receiver_->port());
    std::string frame = EncodeFrame(EndMessage{1, 1});  // End without Begin
    ASSERT_TRUE(internal::WriteAll(peer.fd(), {{frame.data(), frame.size()}}).ok());
    auto reply = internal::ReadFrame(peer.fd());
    EXPECT_TRUE(reply.ok() && reply->type == MessageType::kError);
  }
  // Still serving.
  Done done;
  uint64_t id = Reserve(0, &done);
  auto transfer = sender_->Begin("127.0.0.1", receiver_->port(), BeginFor(id));
  ASSERT_TRUE(transfer.ok()) << transfer.status();
  for (uint32_t l = 0; l < kLayers; ++l) (*transfer)->SendLayer(l, source_.Layer(l));
  EXPECT_TRUE((*transfer)->Finish(1).ok());
  EXPECT_TRUE(done.Wait().first.ok());
}

INSTANTIATE_TEST_SUITE_P(Transports, RawTransferTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "SharedMemory" : "Tcp"; });

TEST(SharedSegmentTest, OpenChecksCookieAndStaleSegmentsAreRemoved) {
  auto segment = SharedSegment::Create(1 << 16);
  ASSERT_TRUE(segment.ok()) << segment.status();
  EXPECT_FALSE(SharedSegment::Open((*segment)->name(), (*segment)->cookie() + 1).ok());
  EXPECT_FALSE(SharedSegment::Open("../etc/passwd", 1).ok());
  auto view = SharedSegment::Open((*segment)->name(), (*segment)->cookie());
  ASSERT_TRUE(view.ok()) << view.status();
  (*view)->data()[SharedSegment::kHeaderBytes] = 42;
  EXPECT_EQ((*segment)->data()[SharedSegment::kHeaderBytes], 42);
  SharedSegment::RemoveStaleSegments();  // never removes a live process's segment
  EXPECT_TRUE(SharedSegment::Open((*segment)->name(), (*segment)->cookie()).ok());
}

}  // namespace
}  // namespace tandem::kv
