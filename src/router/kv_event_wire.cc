#include "router/kv_event_wire.h"

#include <array>
#include <cstdint>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"

namespace tandem::router {
namespace {

using nlohmann::json;

absl::StatusOr<std::vector<BlockHash>> ParseBlocks(const json& value) {
  if (!value.is_array()) return absl::InvalidArgumentError("kv event: 'blocks' must be an array");
  std::vector<BlockHash> blocks;
  blocks.reserve(value.size());
  for (const json& item : value) {
    if (!item.is_string()) {
      return absl::InvalidArgumentError("kv event: block hashes must be hex strings");
    }
    absl::StatusOr<uint64_t> hash = ParseHexId(item.get<std::string>(), "blocks[]");
    if (!hash.ok()) return hash.status();
    blocks.push_back(*hash);
  }
  return blocks;
}

json BlocksJson(const std::vector<BlockHash>& blocks) {
  json out = json::array();
  for (BlockHash hash : blocks) out.push_back(HexId(hash));
  return out;
}

absl::StatusOr<json> ParseObject(const std::string& text, const char* what) {
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": not a JSON object"));
  }
  return parsed;
}

absl::StatusOr<uint64_t> EventId(const json& object, const char* what) {
  auto it = object.find("event_id");
  if (it == object.end() || !it->is_number_unsigned()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": 'event_id' must be a non-negative integer"));
  }
  return it->get<uint64_t>();
}

absl::StatusOr<uint64_t> Epoch(const json& object, const char* what) {
  auto it = object.find("epoch");
  if (it == object.end() || !it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": 'epoch' must be a hex string"));
  }
  return ParseHexId(it->get<std::string>(), "epoch");
}

// The fast path for the common case: a flat object whose values are plain strings (no escapes),
// unsigned integers, or arrays of plain strings, as workers write events. It decodes in one pass
// without building a document; anything else (escapes, nesting, bad digits, a missing field)
// returns false and the general parser decides, with its precise error messages.
class FlatEventScanner {
 public:
  explicit FlatEventScanner(std::string_view text)
      : p_(text.data()), end_(text.data() + text.size()) {}

  bool Decode(KvEvent* out) {
    bool have_epoch = false, have_id = false, have_type = false, have_blocks = false;
    SkipSpace();
    if (!Eat('{')) return false;
    SkipSpace();
    if (Peek() == '}') return false;  // no fields at all: let the general parser say which
    while (true) {
      std::string_view key;
      if (!String(&key)) return false;
      SkipSpace();
      if (!Eat(':')) return false;
      SkipSpace();
      if (key == "epoch") {
        std::string_view value;
        if (!String(&value) || !Hex(value, &out->epoch)) return false;
        have_epoch = true;
      } else if (key == "event_id") {
        if (!Unsigned(&out->event_id)) return false;
        have_id = true;
      } else if (key == "type") {
        std::string_view value;
        if (!String(&value)) return false;
        if (value == "stored") {
          out->type = KvEvent::Type::kStored;
        } else if (value == "removed") {
          out->type = KvEvent::Type::kRemoved;
        } else if (value == "cleared") {
          out->type = KvEvent::Type::kCleared;
        } else {
          return false;
        }
        have_type = true;
      } else if (key == "parent") {
        std::string_view value;
        if (!String(&value) || !Hex(value, &parent_)) return false;
        have_parent_ = true;
      } else if (key == "blocks") {
        if (!Blocks(&out->block_hashes)) return false;
        have_blocks = true;
      } else {
        return false;  // a field workers do not send: the general parser decides
      }
      SkipSpace();
      if (Eat(',')) {
        SkipSpace();
        continue;
      }
      if (!Eat('}')) return false;
      break;
    }
    SkipSpace();
    if (p_ != end_ || !have_epoch || !have_id || !have_type) return false;
    if (out->type == KvEvent::Type::kCleared) {
      out->block_hashes.clear();
      return true;
    }
    if (!have_blocks) return false;
    if (out->type == KvEvent::Type::kStored && have_parent_) out->parent_hash = parent_;
    return true;
  }

 private:
  char Peek() const { return p_ < end_ ? *p_ : '\0'; }
  bool Eat(char c) {
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\t' || *p_ == '\r')) ++p_;
  }
  bool String(std::string_view* out) {
    if (!Eat('"')) return false;
    const char* start = p_;
    while (p_ < end_ && *p_ != '"') {
      if (*p_ == '\\' || static_cast<unsigned char>(*p_) < 0x20) return false;
      ++p_;
    }
    if (p_ == end_) return false;
    *out = std::string_view(start, p_ - start);
    ++p_;
    return true;
  }
  static bool Hex(std::string_view text, uint64_t* out) {
    if (text.empty() || text.size() > 16) return false;
    uint64_t value = 0;
    uint8_t bad = 0;
    for (char c : text) {
      const uint8_t digit = kHexDigit[static_cast<unsigned char>(c)];
      bad |= digit;
      value = (value << 4) | (digit & 15);
    }
    if (bad & 0x80) return false;
    *out = value;
    return true;
  }
  // Hex digit values; 0x80 marks a character that is not one.
  static constexpr auto kHexDigit = [] {
    std::array<uint8_t, 256> table{};
    table.fill(0x80);
    for (int c = '0'; c <= '9'; ++c) table[c] = static_cast<uint8_t>(c - '0');
    for (int c = 'a'; c <= 'f'; ++c) table[c] = static_cast<uint8_t>(c - 'a' + 10);
    for (int c = 'A'; c <= 'F'; ++c) table[c] = static_cast<uint8_t>(c - 'A' + 10);
    return table;
  }();
  bool Unsigned(uint64_t* out) {
    const char* start = p_;
    uint64_t value = 0;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') {
      const uint64_t digit = static_cast<uint64_t>(*p_ - '0');
      if (value > (UINT64_MAX - digit) / 10) return false;
      value = value * 10 + digit;
      ++p_;
    }
    if (p_ == start || (p_ - start > 1 && *start == '0')) return false;
    // A fraction or an exponent makes it a float, which the general parser refuses.
    if (p_ < end_ && (*p_ == '.' || *p_ == 'e' || *p_ == 'E')) return false;
    *out = value;
    return true;
  }
  bool Blocks(std::vector<BlockHash>* out) {
    out->clear();
    if (!Eat('[')) return false;
    SkipSpace();
    if (Eat(']')) return true;
    while (true) {
      std::string_view text;
      uint64_t hash = 0;
      if (!String(&text) || !Hex(text, &hash)) return false;
      out->push_back(hash);
      SkipSpace();
      if (Eat(',')) {
        SkipSpace();
        continue;
      }
      return Eat(']');
    }
  }
  const char* p_;
  const char* end_;
  uint64_t parent_ = kRootParentHash;
  bool have_parent_ = false;
};

}  // namespace

std::string HexId(uint64_t value) { return absl::StrFormat("%016x", value); }

absl::StatusOr<uint64_t> ParseHexId(const std::string& text, const std::string& field) {
  if (text.empty() || text.size() > 16) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field, "' must be 1 to 16 hex digits, got '", text.substr(0, 40), "'"));
  }
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("'", field, "' must be hex digits, got '", text.substr(0, 40), "'"));
    }
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  return value;
}

std::string KvEventToJson(const KvEvent& event) {
  const char* type = event.type == KvEvent::Type::kStored    ? "stored"
                     : event.type == KvEvent::Type::kRemoved ? "removed"
                                                             : "cleared";
  json out = {{"epoch", HexId(event.epoch)}, {"event_id", event.event_id}, {"type", type}};
  if (event.type == KvEvent::Type::kStored) out["parent"] = HexId(event.parent_hash);
  if (event.type != KvEvent::Type::kCleared) out["blocks"] = BlocksJson(event.block_hashes);
  return out.dump();
}

absl::StatusOr<KvEvent> KvEventFromJson(const std::string& text) {
  {
    KvEvent event;
    if (FlatEventScanner(text).Decode(&event)) return event;
  }
  absl::StatusOr<json> parsed = ParseObject(text, "kv event");
  if (!parsed.ok()) return parsed.status();
  KvEvent event;
  absl::StatusOr<uint64_t> epoch = Epoch(*parsed, "kv event");
  if (!epoch.ok()) return epoch.status();
  event.epoch = *epoch;
  absl::StatusOr<uint64_t> id = EventId(*parsed, "kv event");
  if (!id.ok()) return id.status();
  event.event_id = *id;
  std::string type = parsed->value("type", "");
  if (type == "stored") {
    event.type = KvEvent::Type::kStored;
  } else if (type == "removed") {
    event.type = KvEvent::Type::kRemoved;
  } else if (type == "cleared") {
    event.type = KvEvent::Type::kCleared;
    return event;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("kv event: type '", type.substr(0, 40), "' is not stored/removed/cleared"));
  }
  if (event.type == KvEvent::Type::kStored && parsed->contains("parent")) {
    if (!(*parsed)["parent"].is_string()) {
      return absl::InvalidArgumentError("kv event: 'parent' must be a hex string");
    }
    absl::StatusOr<uint64_t> parent = ParseHexId((*parsed)["parent"].get<std::string>(), "parent");
    if (!parent.ok()) return parent.status();
    event.parent_hash = *parent;
  }
  auto blocks = parsed->find("blocks");
  if (blocks == parsed->end()) return absl::InvalidArgumentError("kv event: 'blocks' is missing");
  absl::StatusOr<std::vector<BlockHash>> hashes = ParseBlocks(*blocks);
  if (!hashes.ok()) return hashes.status();
  event.block_hashes = std::move(*hashes);
  return event;
}

absl::Status KvEventFromJsonInto(std::string_view text, KvEvent* out) {
  out->parent_hash = kRootParentHash;
  if (FlatEventScanner(text).Decode(out)) return absl::OkStatus();
  absl::StatusOr<KvEvent> parsed = KvEventFromJson(std::string(text));
  if (!parsed.ok()) return parsed.status();
  *out = *std::move(parsed);
  return absl::OkStatus();
}

std::string KvSnapshotToJson(const KvSnapshot& snapshot) {
  return json{{"epoch", HexId(snapshot.epoch)},
              {"event_id", snapshot.event_id},
              {"blocks", BlocksJson(snapshot.block_hashes)}}
      .dump();
}

absl::StatusOr<KvSnapshot> KvSnapshotFromJson(const std::string& text) {
  absl::StatusOr<json> parsed = ParseObject(text, "kv snapshot");
  if (!parsed.ok()) return parsed.status();
  KvSnapshot snapshot;
  absl::StatusOr<uint64_t> epoch = Epoch(*parsed, "kv snapshot");
  if (!epoch.ok()) return epoch.status();
  snapshot.epoch = *epoch;
  absl::StatusOr<uint64_t> id = EventId(*parsed, "kv snapshot");
  if (!id.ok()) return id.status();
  snapshot.event_id = *id;
  auto blocks = parsed->find("blocks");
  if (blocks == parsed->end()) {
    return absl::InvalidArgumentError("kv snapshot: 'blocks' is missing");
  }
  absl::StatusOr<std::vector<BlockHash>> hashes = ParseBlocks(*blocks);
  if (!hashes.ok()) return hashes.status();
  snapshot.block_hashes = std::move(*hashes);
  return snapshot;
}

}  // namespace tandem::router
