// The KV transfer wire protocol: frames exchanged between a prefill worker (the sender) and a
// decode worker (the receiver) over one TCP connection. The byte layout is specified in
// docs/protocols.md ("KV transfer protocol"); this file is its only encoder and decoder.
//
// Every frame is a 12-byte header (magic "TKV1", version, type, body length) followed by a
// little-endian body; a Chunk body may be followed by `payload_length` raw KV bytes.
//
//   std::string bytes = EncodeFrame(ChunkMessage{...});
//   absl::StatusOr<FrameHeader> header = DecodeHeader(bytes.substr(0, kHeaderBytes));
//   absl::StatusOr<Message> message = DecodeBody(header->type, body);
//
// Decoding never trusts its input: every length is checked against the limits below and the
// bytes present, and a malformed frame yields kInvalidArgument / kDataLoss, never a crash.
//
// Thread-safety: stateless functions.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::kv {

inline constexpr uint32_t kMagic = 0x3156'4b54;  // bytes "TKV1"
// 2: Begin states the KV element type.
inline constexpr uint8_t kVersion = 2;
inline constexpr size_t kHeaderBytes = 12;
inline constexpr uint32_t kMaxBodyBytes = 1 << 20;
inline constexpr size_t kNonceBytes = 16;
inline constexpr size_t kMacBytes = 32;
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxBlocks = 1 << 20;
inline constexpr uint64_t kMaxLayerBlockBytes = 64ull << 20;
inline constexpr size_t kMaxReasonBytes = 1024;
inline constexpr size_t kMaxSegmentNameBytes = 255;

enum class MessageType : uint8_t {
  kServerHello = 1,
  kClientHello = 2,
  kHelloOk = 3,
  kBegin = 4,
  kAccept = 5,
  kChunk = 6,
  kEnd = 7,
  kComplete = 8,
  kAbort = 9,
  kAbortAck = 10,
  kError = 11,
};

// Why a transfer or a connection was refused or ended; carried in Abort and Error frames.
enum class RefusalCode : uint32_t {
  kUnknown = 0,
  kBadMessage = 1,
  kUnauthenticated = 2,
  kUnknownReservation = 3,
  kStaleEpoch = 4,
  kLeaseExpired = 5,
  kShapeMismatch = 6,
  kChecksumMismatch = 7,
  kCancelled = 8,
  kIncomplete = 9,
  kShuttingDown = 10,
  kSenderFailed = 11,
};
const char* RefusalCodeName(RefusalCode code);
// "f32", "bf16", "unstated" (0) or "unknown" for a KV element type code.
const char* KvTypeCodeName(uint8_t code);

struct FrameHeader {
  MessageType type;
  uint32_t body_length;
};

// Receiver -> sender, first frame on a connection.
struct ServerHelloMessage {
  uint64_t receiver_epoch = 0;
  std::array<uint8_t, kNonceBytes> nonce{};
  uint64_t host_id = 0;         // equal host ids mean the shared-memory transport may work
  std::string segment_name;     // the receiver's shared KV segment, empty when it has none
  uint64_t segment_cookie = 0;  // written at the segment's start, proves the sender mapped it
};

// Sender -> receiver: proves knowledge of the cluster token.
struct ClientHelloMessage {
  uint64_t sender_epoch = 0;
  std::array<uint8_t, kMacBytes> mac{};  // HMAC-SHA256(token, nonce || sender_epoch)
  uint8_t mapped_segment = 0;            // 1 when the sender mapped the receiver's segment
};

struct HelloOkMessage {};

// Sender -> receiver: start filling a reservation.
struct BeginMessage {
  uint64_t reservation_id = 0;
  uint64_t receiver_epoch = 0;
  uint32_t num_layers = 0;
  uint32_t num_blocks = 0;  // blocks this transfer fills (the delta), in reservation order
  uint64_t layer_block_bytes = 0;
  uint8_t want_shared_memory = 0;
  // The element type of the KV bytes: a KvType code (core/kv_type.h: 1 f32, 2 bf16); 0 = not
  // stated, accepted by any reservation that does not state one either.
  uint8_t kv_type = 0;
};

// Receiver -> sender: the reservation is open for this transfer. With shared memory it tells
// where each block's layer-0 bytes live in the segment and the distance between layers.
struct AcceptMessage {
  uint64_t reservation_id = 0;
  uint8_t shared_memory = 0;
  uint64_t layer_stride = 0;
  std::vector<uint64_t> block_offsets;  // one per block when shared_memory == 1
  // 1: the receiver verifies every chunk's checksum (always over TCP); 0 (shared memory only):
  // it does not, so the sender sends checksum 0 and copies without hashing.
  uint8_t verify_checksums = 1;
};

// Sender -> receiver: `block_count` consecutive blocks of one layer. Over TCP the payload
// (block_count * layer_block_bytes) follows; over shared memory it is already in place and
// payload_length is 0. `checksum` is XXH3-64 of the blocks' bytes in order.
struct ChunkMessage {
  uint64_t reservation_id = 0;
  uint32_t layer = 0;
  uint32_t first_block = 0;
  uint32_t block_count = 0;
  uint64_t payload_length = 0;
  uint64_t checksum = 0;
};

// Sender -> receiver: every layer of every block was sent; `first_token` is the first sampled
// token (or -1 when the sender does not sample).
struct EndMessage {
  uint64_t reservation_id = 0;
  int32_t first_token = -1;
};

struct CompleteMessage {
  uint64_t reservation_id = 0;
};

// Either side: this transfer is over without success. The receiver frees its blocks only after
// the sender's AbortAck (or the connection's end), so no late write can land in reused memory.
struct AbortMessage {
  uint64_t reservation_id = 0;
  RefusalCode code = RefusalCode::kUnknown;
  std::string reason;
};

struct AbortAckMessage {
  uint64_t reservation_id = 0;
};

// Either side: the connection is refused; the sender of Error closes it.
struct ErrorMessage {
  RefusalCode code = RefusalCode::kUnknown;
  std::string reason;
};

using Message = std::variant<ServerHelloMessage, ClientHelloMessage, HelloOkMessage, BeginMessage,
                             AcceptMessage, ChunkMessage, EndMessage, CompleteMessage, AbortMessage,
                             AbortAckMessage, ErrorMessage>;

MessageType TypeOf(const Message& message);

// Header + body (without any chunk payload).
std::string EncodeFrame(const Message& message);

absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes);
absl::StatusOr<Message> DecodeBody(MessageType type, std::string_view body);

}  // namespace tandem::kv
