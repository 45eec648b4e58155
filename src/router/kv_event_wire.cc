#include "router/kv_event_wire.h"

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
