// The JSON form of KV events and snapshots on the worker's `/v1/kv/events` stream
// (docs/protocols.md, "GET /v1/kv/events"): workers encode, the router decodes. Epochs and block
// hashes travel as 16-digit hex strings so no JSON reader rounds them.
//
//   std::string line = KvEventToJson(event);                 // worker side
//   absl::StatusOr<KvEvent> back = KvEventFromJson(line);    // router side
//
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "router/kv_index.h"

namespace tandem::router {

std::string HexId(uint64_t value);
absl::StatusOr<uint64_t> ParseHexId(const std::string& text, const std::string& field);

std::string KvEventToJson(const KvEvent& event);
absl::StatusOr<KvEvent> KvEventFromJson(const std::string& text);
// The same into `out`, reusing its block vector: the router's ingestion loop decodes every event
// into one KvEvent and allocates nothing in the steady state.
absl::Status KvEventFromJsonInto(std::string_view text, KvEvent* out);

std::string KvSnapshotToJson(const KvSnapshot& snapshot);
absl::StatusOr<KvSnapshot> KvSnapshotFromJson(const std::string& text);

}  // namespace tandem::router
