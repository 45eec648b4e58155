// libFuzzer target: arbitrary bytes through the KV frame decoder.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "kv/wire.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  while (bytes.size() >= tandem::kv::kHeaderBytes) {
    auto header = tandem::kv::DecodeHeader(bytes.substr(0, tandem::kv::kHeaderBytes));
    if (!header.ok()) {
      // Still exercise every body decoder with what is left.
      if (!bytes.empty()) {
        auto type = static_cast<tandem::kv::MessageType>(1 + static_cast<uint8_t>(bytes[0]) % 11);
        (void)tandem::kv::DecodeBody(type, bytes.substr(1));
      }
      return 0;
    }
    bytes.remove_prefix(tandem::kv::kHeaderBytes);
    size_t length = std::min<size_t>(header->body_length, bytes.size());
    auto message = tandem::kv::DecodeBody(header->type, bytes.substr(0, length));
    if (message.ok()) (void)tandem::kv::EncodeFrame(*message);
    bytes.remove_prefix(length);
  }
  return 0;
}
