#include "kv/wire.h"

#include "gtest/gtest.h"

namespace tandem::kv {
namespace {

Message RoundTrip(const Message& message) {
  std::string bytes = EncodeFrame(message);
  absl::StatusOr<FrameHeader> header =
      DecodeHeader(std::string_view(bytes).substr(0, kHeaderBytes));
  EXPECT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->type, TypeOf(message));
  EXPECT_EQ(header->body_length, bytes.size() - kHeaderBytes);
  absl::StatusOr<Message> decoded =
      DecodeBody(header->type, std::string_view(bytes).substr(kHeaderBytes));
  EXPECT_TRUE(decoded.ok()) << decoded.status();
  return *decoded;
}

std::vector<Message> Samples() {
  ServerHelloMessage hello;
  hello.receiver_epoch = 77;
  hello.nonce[3] = 9;
  hello.host_id = 5;
  hello.segment_name = "/tandem-kv-1-ab";
  hello.segment_cookie = 1234;
  ClientHelloMessage client;
  client.sender_epoch = 8;
  client.mac[31] = 0xee;
  client.mapped_segment = 1;
  AcceptMessage accept{42, 1, 4096, {8192, 16384}};
  return {hello,
          client,
          HelloOkMessage{},
          BeginMessage{42, 77, 24, 3, 8192, 1, 2},
          accept,
          ChunkMessage{42, 5, 1, 2, 16384, 0xdeadbeef},
          EndMessage{42, 151},
          CompleteMessage{42},
          AbortMessage{42, RefusalCode::kLeaseExpired, "too slow"},
          AbortAckMessage{42},
          ErrorMessage{RefusalCode::kUnauthenticated, "wrong token"}};
}

TEST(WireTest, EveryMessageRoundTrips) {
  for (const Message& message : Samples()) {
    Message back = RoundTrip(message);
    EXPECT_EQ(EncodeFrame(back), EncodeFrame(message))
        << "type " << static_cast<int>(TypeOf(message));
  }
  auto accept = std::get<AcceptMessage>(RoundTrip(Samples()[4]));
  EXPECT_EQ(accept.block_offsets, (std::vector<uint64_t>{8192, 16384}));
  EXPECT_EQ(accept.verify_checksums, 1);
  EXPECT_EQ(std::get<BeginMessage>(RoundTrip(Samples()[3])).kv_type, 2);
  auto abort = std::get<AbortMessage>(RoundTrip(Samples()[8]));
  EXPECT_EQ(abort.reason, "too slow");
  EXPECT_EQ(abort.code, RefusalCode::kLeaseExpired);
}

TEST(WireTest, EveryTruncationIsRefusedCleanly) {
  for (const Message& message : Samples()) {
    std::string bytes = EncodeFrame(message);
    std::string_view body = std::string_view(bytes).substr(kHeaderBytes);
    for (size_t n = 0; n < body.size(); ++n) {
      EXPECT_FALSE(DecodeBody(TypeOf(message), body.substr(0, n)).ok())
          << "type " << static_cast<int>(TypeOf(message)) << " cut at " << n;
    }
    // Trailing garbage is refused too.
    EXPECT_FALSE(DecodeBody(TypeOf(message), std::string(body) + "x").ok());
  }
}

TEST(WireTest, BadHeadersAreRefused) {
  std::string good = EncodeFrame(CompleteMessage{1});
  EXPECT_FALSE(DecodeHeader(good.substr(0, 5)).ok());
  std::string magic = good;
  magic[0] = 'X';
  EXPECT_NE(DecodeHeader(magic).status().message().find("magic"), std::string::npos);
  std::string version = good;
  version[4] = 9;
  EXPECT_NE(DecodeHeader(version).status().message().find("version"), std::string::npos);
  std::string type = good;
  type[5] = 99;
  EXPECT_FALSE(DecodeHeader(type).ok());
  std::string huge = good;
  huge[11] = 0x7f;  // body length 2 GiB
  EXPECT_NE(DecodeHeader(huge).status().message().find("exceeds"), std::string::npos);
}

TEST(WireTest, BeginShapeLimits) {
  for (BeginMessage begin :
       {BeginMessage{1, 1, 0, 1, 1, 0}, BeginMessage{1, 1, 5000, 1, 1, 0},
        BeginMessage{1, 1, 1, kMaxBlocks + 1, 1, 0}, BeginMessage{1, 1, 1, 1, 0, 0},
        BeginMessage{1, 1, 1, 1, kMaxLayerBlockBytes + 1, 0}, BeginMessage{1, 1, 1, 1, 1, 0, 3}}) {
    std::string bytes = EncodeFrame(begin);
    EXPECT_FALSE(
        DecodeBody(MessageType::kBegin, std::string_view(bytes).substr(kHeaderBytes)).ok());
  }
}

TEST(WireTest, OnlySharedMemoryTransfersMaySkipChecksums) {
  AcceptMessage shm{1, 1, 64, {4096}, /*verify_checksums=*/0};
  std::string bytes = EncodeFrame(shm);
  absl::StatusOr<Message> back =
      DecodeBody(MessageType::kAccept, std::string_view(bytes).substr(kHeaderBytes));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(std::get<AcceptMessage>(*back).verify_checksums, 0);
  AcceptMessage tcp{1, 0, 0, {}, /*verify_checksums=*/0};
  bytes = EncodeFrame(tcp);
  EXPECT_FALSE(DecodeBody(MessageType::kAccept, std::string_view(bytes).substr(kHeaderBytes)).ok());
  AcceptMessage odd{1, 1, 64, {4096}, /*verify_checksums=*/2};
  bytes = EncodeFrame(odd);
  EXPECT_FALSE(DecodeBody(MessageType::kAccept, std::string_view(bytes).substr(kHeaderBytes)).ok());
}

TEST(WireTest, AcceptCountCannotAllocateBeyondBody) {
  AcceptMessage accept{1, 1, 0, {}};
  std::string bytes = EncodeFrame(accept);
  // Claim a million offsets in a body that holds none.
  bytes[kHeaderBytes + 17] = 0x0f;
  bytes[kHeaderBytes + 18] = 0x0f;
  EXPECT_FALSE(DecodeBody(MessageType::kAccept, std::string_view(bytes).substr(kHeaderBytes)).ok());
}

}  // namespace
}  // namespace tandem::kv
