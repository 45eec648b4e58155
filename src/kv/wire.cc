#include "kv/wire.h"

#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/kv_type.h"

namespace tandem::kv {
namespace {

class Writer {
 public:
  void U8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void U16(uint16_t v) { Little(v, 2); }
  void U32(uint32_t v) { Little(v, 4); }
  void U64(uint64_t v) { Little(v, 8); }
  void I32(int32_t v) { U32(static_cast<uint32_t>(v)); }
  void Bytes(const uint8_t* data, size_t n) { out_.append(reinterpret_cast<const char*>(data), n); }
  void String16(const std::string& s) {
    U16(static_cast<uint16_t>(s.size()));
    out_.append(s);
  }
  std::string& out() { return out_; }

 private:
  void Little(uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  }
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U8(uint8_t* v) { return Little(v, 1); }
  bool U16(uint16_t* v) { return Little(v, 2); }
  bool U32(uint32_t* v) { return Little(v, 4); }
  bool U64(uint64_t* v) { return Little(v, 8); }
  bool I32(int32_t* v) {
    uint32_t u;
    if (!U32(&u)) return false;
    *v = static_cast<int32_t>(u);
    return true;
  }
  bool Bytes(uint8_t* data, size_t n) {
    if (in_.size() - pos_ < n) return false;
    std::memcpy(data, in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool String16(std::string* s, size_t limit) {
    uint16_t n;
    if (!U16(&n) || n > limit || in_.size() - pos_ < n) return false;
    s->assign(in_.data() + pos_, n);
    pos_ += n;
    return true;
  }
  bool AtEnd() const { return pos_ == in_.size(); }

 private:
  template <typename T>
  bool Little(T* v, int bytes) {
    if (in_.size() - pos_ < static_cast<size_t>(bytes)) return false;
    uint64_t value = 0;
    for (int i = 0; i < bytes; ++i) {
      value |= static_cast<uint64_t>(static_cast<uint8_t>(in_[pos_ + i])) << (8 * i);
    }
    pos_ += bytes;
    *v = static_cast<T>(value);
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

void EncodeBody(const ServerHelloMessage& m, Writer& w) {
  w.U64(m.receiver_epoch);
  w.Bytes(m.nonce.data(), m.nonce.size());
  w.U64(m.host_id);
  w.String16(m.segment_name);
  w.U64(m.segment_cookie);
}
void EncodeBody(const ClientHelloMessage& m, Writer& w) {
  w.U64(m.sender_epoch);
  w.Bytes(m.mac.data(), m.mac.size());
  w.U8(m.mapped_segment);
}
void EncodeBody(const HelloOkMessage&, Writer&) {}
void EncodeBody(const BeginMessage& m, Writer& w) {
  w.U64(m.reservation_id);
  w.U64(m.receiver_epoch);
  w.U32(m.num_layers);
  w.U32(m.num_blocks);
  w.U64(m.layer_block_bytes);
  w.U8(m.want_shared_memory);
  w.U8(m.kv_type);
}
void EncodeBody(const AcceptMessage& m, Writer& w) {
  w.U64(m.reservation_id);
  w.U8(m.shared_memory);
  w.U64(m.layer_stride);
  w.U32(static_cast<uint32_t>(m.block_offsets.size()));
  for (uint64_t offset : m.block_offsets) w.U64(offset);
  w.U8(m.verify_checksums);
}
void EncodeBody(const ChunkMessage& m, Writer& w) {
  w.U64(m.reservation_id);
  w.U32(m.layer);
  w.U32(m.first_block);
  w.U32(m.block_count);
  w.U64(m.payload_length);
  w.U64(m.checksum);
}
void EncodeBody(const EndMessage& m, Writer& w) {
  w.U64(m.reservation_id);
  w.I32(m.first_token);
}
void EncodeBody(const CompleteMessage& m, Writer& w) { w.U64(m.reservation_id); }
void EncodeBody(const AbortMessage& m, Writer& w) {
  w.U64(m.reservation_id);
  w.U32(static_cast<uint32_t>(m.code));
  w.String16(m.reason.substr(0, kMaxReasonBytes));
}
void EncodeBody(const AbortAckMessage& m, Writer& w) { w.U64(m.reservation_id); }
void EncodeBody(const ErrorMessage& m, Writer& w) {
  w.U32(static_cast<uint32_t>(m.code));
  w.String16(m.reason.substr(0, kMaxReasonBytes));
}

absl::Status Truncated(MessageType type) {
  return absl::InvalidArgumentError(
      absl::StrCat("kv frame type ", static_cast<int>(type), ": body is truncated or malformed"));
}

RefusalCode ToCode(uint32_t raw) {
  return raw <= static_cast<uint32_t>(RefusalCode::kSenderFailed) ? static_cast<RefusalCode>(raw)
                                                                  : RefusalCode::kUnknown;
}

}  // namespace

const char* KvTypeCodeName(uint8_t code) {
  if (code == 0) return "unstated";
  if (code > static_cast<uint8_t>(KvType::kBF16)) return "unknown";
  return KvTypeName(static_cast<KvType>(code)).data();
}

const char* RefusalCodeName(RefusalCode code) {
  switch (code) {
    case RefusalCode::kUnknown:
      return "unknown";
    case RefusalCode::kBadMessage:
      return "bad_message";
    case RefusalCode::kUnauthenticated:
      return "unauthenticated";
    case RefusalCode::kUnknownReservation:
      return "unknown_reservation";
    case RefusalCode::kStaleEpoch:
      return "stale_epoch";
    case RefusalCode::kLeaseExpired:
      return "lease_expired";
    case RefusalCode::kShapeMismatch:
      return "shape_mismatch";
    case RefusalCode::kChecksumMismatch:
      return "checksum_mismatch";
    case RefusalCode::kCancelled:
      return "cancelled";
    case RefusalCode::kIncomplete:
      return "incomplete";
    case RefusalCode::kShuttingDown:
      return "shutting_down";
    case RefusalCode::kSenderFailed:
      return "sender_failed";
  }
  return "unknown";
}

MessageType TypeOf(const Message& message) { return static_cast<MessageType>(message.index() + 1); }

std::string EncodeFrame(const Message& message) {
  Writer body;
  std::visit([&](const auto& m) { EncodeBody(m, body); }, message);
  Writer frame;
  frame.U32(kMagic);
  frame.U8(kVersion);
  frame.U8(static_cast<uint8_t>(TypeOf(message)));
  frame.U16(0);
  frame.U32(static_cast<uint32_t>(body.out().size()));
  frame.out().append(body.out());
  return std::move(frame.out());
}

absl::StatusOr<FrameHeader> DecodeHeader(std::string_view bytes) {
  Reader r(bytes);
  uint32_t magic, length;
  uint8_t version, type;
  uint16_t reserved;
  if (!r.U32(&magic) || !r.U8(&version) || !r.U8(&type) || !r.U16(&reserved) || !r.U32(&length)) {
    return absl::InvalidArgumentError("kv frame header is truncated");
  }
  if (magic != kMagic) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv frame has wrong magic 0x", absl::Hex(magic), " (expected \"TKV1\")"));
  }
  if (version != kVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv protocol version ", version, " is not supported (this side speaks ", kVersion, ")"));
  }
  if (type < 1 || type > static_cast<uint8_t>(MessageType::kError)) {
    return absl::InvalidArgumentError(absl::StrCat("kv frame type ", type, " is not known"));
  }
  if (length > kMaxBodyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv frame body of ", length, " bytes exceeds the limit of ", kMaxBodyBytes));
  }
  return FrameHeader{static_cast<MessageType>(type), length};
}

absl::StatusOr<Message> DecodeBody(MessageType type, std::string_view body) {
  Reader r(body);
  auto done = [&](Message m) -> absl::StatusOr<Message> {
    if (!r.AtEnd()) return Truncated(type);
    return m;
  };
  switch (type) {
    case MessageType::kServerHello: {
      ServerHelloMessage m;
      if (!r.U64(&m.receiver_epoch) || !r.Bytes(m.nonce.data(), m.nonce.size()) ||
          !r.U64(&m.host_id) || !r.String16(&m.segment_name, kMaxSegmentNameBytes) ||
          !r.U64(&m.segment_cookie)) {
        return Truncated(type);
      }
      return done(m);
    }
    case MessageType::kClientHello: {
      ClientHelloMessage m;
      if (!r.U64(&m.sender_epoch) || !r.Bytes(m.mac.data(), m.mac.size()) ||
          !r.U8(&m.mapped_segment)) {
        return Truncated(type);
      }
      return done(m);
    }
    case MessageType::kHelloOk:
      return done(HelloOkMessage{});
    case MessageType::kBegin: {
      BeginMessage m;
      if (!r.U64(&m.reservation_id) || !r.U64(&m.receiver_epoch) || !r.U32(&m.num_layers) ||
          !r.U32(&m.num_blocks) || !r.U64(&m.layer_block_bytes) || !r.U8(&m.want_shared_memory) ||
          !r.U8(&m.kv_type)) {
        return Truncated(type);
      }
      if (m.kv_type > static_cast<uint8_t>(KvType::kBF16)) {
        return absl::InvalidArgumentError(
            absl::StrCat("kv Begin: KV element type ", m.kv_type, " is not known"));
      }
      if (m.num_layers == 0 || m.num_layers > kMaxLayers || m.num_blocks > kMaxBlocks ||
          m.layer_block_bytes == 0 || m.layer_block_bytes > kMaxLayerBlockBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat("kv Begin: shape out of range (layers ", m.num_layers, ", blocks ",
                         m.num_blocks, ", bytes per layer-block ", m.layer_block_bytes, ")"));
      }
      return done(m);
    }
    case MessageType::kAccept: {
      AcceptMessage m;
      uint32_t count;
      if (!r.U64(&m.reservation_id) || !r.U8(&m.shared_memory) || !r.U64(&m.layer_stride) ||
          !r.U32(&count)) {
        return Truncated(type);
      }
      if (count > kMaxBlocks || count * 8ull > body.size()) return Truncated(type);
      m.block_offsets.resize(count);
      for (uint64_t& offset : m.block_offsets) {
        if (!r.U64(&offset)) return Truncated(type);
      }
      if (!r.U8(&m.verify_checksums)) return Truncated(type);
      if (m.verify_checksums > 1 || (m.verify_checksums == 0 && m.shared_memory != 1)) {
        return absl::InvalidArgumentError(
            "kv Accept: checksums can be skipped only over shared memory");
      }
      return done(m);
    }
    case MessageType::kChunk: {
      ChunkMessage m;
      if (!r.U64(&m.reservation_id) || !r.U32(&m.layer) || !r.U32(&m.first_block) ||
          !r.U32(&m.block_count) || !r.U64(&m.payload_length) || !r.U64(&m.checksum)) {
        return Truncated(type);
      }
      return done(m);
    }
    case MessageType::kEnd: {
      EndMessage m;
      if (!r.U64(&m.reservation_id) || !r.I32(&m.first_token)) return Truncated(type);
      return done(m);
    }
    case MessageType::kComplete: {
      CompleteMessage m;
      if (!r.U64(&m.reservation_id)) return Truncated(type);
      return done(m);
    }
    case MessageType::kAbort: {
      AbortMessage m;
      uint32_t code;
      if (!r.U64(&m.reservation_id) || !r.U32(&code) || !r.String16(&m.reason, kMaxReasonBytes)) {
        return Truncated(type);
      }
      m.code = ToCode(code);
      return done(m);
    }
    case MessageType::kAbortAck: {
      AbortAckMessage m;
      if (!r.U64(&m.reservation_id)) return Truncated(type);
      return done(m);
    }
    case MessageType::kError: {
      ErrorMessage m;
      uint32_t code;
      if (!r.U32(&code) || !r.String16(&m.reason, kMaxReasonBytes)) return Truncated(type);
      m.code = ToCode(code);
      return done(m);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("kv frame type ", static_cast<int>(type), " is not known"));
}

}  // namespace tandem::kv
