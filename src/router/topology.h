// Topology: where a worker runs (host and rack) and what the link between two workers costs,
// by their distance: same host, same rack, or across racks. The routing policy charges a
// prefill worker for the time to push the decode worker's missing KV blocks over that link.
//
// The link table is configurable; as YAML (every key optional, defaults below):
//
//   links:                    # bandwidth in GB/s (1e9 bytes per second), latency in µs
//     same_host:  {gigabytes_per_second: 50,   latency_us: 5}     # shared memory / NVLink
//     same_rack:  {gigabytes_per_second: 25,   latency_us: 20}    # 200 Gb/s NIC
//     cross_rack: {gigabytes_per_second: 6.25, latency_us: 50}    # 50 Gb/s share of the spine
//
//   TANDEM_ASSIGN_OR_RETURN(LinkTable links, ParseLinkTable(yaml_text, "router.yaml"));
//   LocationInterner names;
//   Location a = names.Intern("node-1", "rack-a"), b = names.Intern("node-7", "rack-a");
//   double seconds = links.TransferSeconds(Distance(a, b), /*bytes=*/64 << 20);
//
// Thread-safety: LinkTable and Location are plain values; LocationInterner is not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace tandem::router {

// How far apart two workers are; unknown placement counts as kCrossRack (the pessimistic case).
enum class LinkDistance : uint8_t { kSameWorker, kSameHost, kSameRack, kCrossRack };
std::string_view LinkDistanceName(LinkDistance distance);

// Dense ids for a worker's host and rack; -1 means not known.
struct Location {
  int32_t host = -1;
  int32_t rack = -1;
};

// The distance between two distinct workers at `a` and `b` (kSameWorker is for the caller to
// decide: two roles of one process). Hosts are only compared when both are known.
LinkDistance Distance(const Location& a, const Location& b);

struct Link {
  double bytes_per_second = 0;
  double latency_seconds = 0;
};

struct LinkTable {
  Link same_host{50e9, 5e-6};
  Link same_rack{25e9, 20e-6};
  Link cross_rack{6.25e9, 50e-6};

  const Link& For(LinkDistance distance) const;
  // Seconds to move `bytes` across a link of `distance`; 0 for kSameWorker or no bytes.
  double TransferSeconds(LinkDistance distance, double bytes) const;
  // How many times slower than a same-host link a link of `distance` is (1 for same host and
  // same worker); the block-count cost model weights transfers by it.
  double SlowdownVsSameHost(LinkDistance distance) const;
};

// Errors name the field and what was expected: bandwidths must be positive and finite,
// latencies non-negative, and a nearer link must not be slower than a farther one.
absl::Status ValidateLinkTable(const LinkTable& links);

// Parses the YAML form above (a document whose `links` key holds the table, or the table
// itself). `source` names the text in error messages (a file name).
absl::StatusOr<LinkTable> ParseLinkTable(std::string_view yaml, std::string_view source);

// Interns host and rack names into Locations. Host names are global: the same host name under
// two racks is still one host.
class LocationInterner {
 public:
  // Empty names mean "unknown" (-1).
  Location Intern(std::string_view host, std::string_view rack);

 private:
  absl::flat_hash_map<std::string, int32_t> hosts_;
  absl::flat_hash_map<std::string, int32_t> racks_;
};

}  // namespace tandem::router
