#include "router/topology.h"

#include <cmath>
#include <exception>
#include <string>

#include "absl/strings/str_cat.h"
#include "yaml-cpp/yaml.h"

namespace tandem::router {

std::string_view LinkDistanceName(LinkDistance distance) {
  switch (distance) {
    case LinkDistance::kSameWorker:
      return "same_worker";
    case LinkDistance::kSameHost:
      return "same_host";
    case LinkDistance::kSameRack:
      return "same_rack";
    case LinkDistance::kCrossRack:
      return "cross_rack";
  }
  return "unknown";
}

LinkDistance Distance(const Location& a, const Location& b) {
  if (a.host >= 0 && a.host == b.host) return LinkDistance::kSameHost;
  if (a.rack >= 0 && a.rack == b.rack) return LinkDistance::kSameRack;
  return LinkDistance::kCrossRack;
}

const Link& LinkTable::For(LinkDistance distance) const {
  switch (distance) {
    case LinkDistance::kSameWorker:
    case LinkDistance::kSameHost:
      return same_host;
    case LinkDistance::kSameRack:
      return same_rack;
    case LinkDistance::kCrossRack:
      break;
  }
  return cross_rack;
}

double LinkTable::TransferSeconds(LinkDistance distance, double bytes) const {
  if (distance == LinkDistance::kSameWorker || bytes <= 0) return 0;
  const Link& link = For(distance);
  return link.latency_seconds + bytes / link.bytes_per_second;
}

double LinkTable::SlowdownVsSameHost(LinkDistance distance) const {
  if (distance == LinkDistance::kSameWorker) return 1;
  return same_host.bytes_per_second / For(distance).bytes_per_second;
}

absl::Status ValidateLinkTable(const LinkTable& links) {
  struct Named {
    const char* name;
    const Link* link;
  };
  const Named all[] = {{"same_host", &links.same_host},
                       {"same_rack", &links.same_rack},
                       {"cross_rack", &links.cross_rack}};
  for (const Named& named : all) {
    const double bandwidth = named.link->bytes_per_second;
    if (!std::isfinite(bandwidth) || bandwidth <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("links.", named.name,
                                                     ".gigabytes_per_second is ", bandwidth / 1e9,
                                                     ", expected a positive finite number"));
    }
    const double latency = named.link->latency_seconds;
    if (!std::isfinite(latency) || latency < 0) {
      return absl::InvalidArgumentError(absl::StrCat("links.", named.name, ".latency_us is ",
                                                     latency * 1e6,
                                                     ", expected a non-negative finite number"));
    }
  }
  if (links.same_rack.bytes_per_second > links.same_host.bytes_per_second ||
      links.cross_rack.bytes_per_second > links.same_rack.bytes_per_second) {
    return absl::InvalidArgumentError(
        absl::StrCat("links: bandwidths must not grow with distance, got same_host ",
                     links.same_host.bytes_per_second / 1e9, " GB/s, same_rack ",
                     links.same_rack.bytes_per_second / 1e9, " GB/s, cross_rack ",
                     links.cross_rack.bytes_per_second / 1e9, " GB/s"));
  }
  return absl::OkStatus();
}

namespace {

// This Abseil's StrCat takes absl::string_view, which is not std::string_view here.
absl::string_view Sv(std::string_view text) { return {text.data(), text.size()}; }

std::string Where(std::string_view source, const YAML::Node& node) {
  const YAML::Mark mark = node.Mark();
  if (mark.line < 0) return std::string(source);
  return absl::StrCat(Sv(source), ":", mark.line + 1);
}

absl::Status ReadNumber(std::string_view source, const YAML::Node& parent, const char* link,
                        const char* key, double scale, double* out) {
  const YAML::Node node = parent[key];
  if (!node) return absl::OkStatus();
  double value = 0;
  if (!node.IsScalar() || !YAML::convert<double>::decode(node, value)) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(source, node), ": links.", link, ".", key, " is not a number"));
  }
  *out = value * scale;
  return absl::OkStatus();
}

absl::StatusOr<LinkTable> ParseLinkTableOrThrow(std::string_view yaml, std::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(Sv(source), ":", error.mark.line + 1, ": not valid YAML: ", error.msg));
  }
  LinkTable links;
  if (!root || root.IsNull()) return links;
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(source, root), ": expected a mapping with same_host/same_rack/cross_rack keys"));
  }
  YAML::Node table = root["links"] ? root["links"] : root;
  if (!table.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        Where(source, table), ": links must be a mapping with same_host/same_rack/cross_rack"));
  }
  struct Field {
    const char* name;
    Link* link;
  };
  Field fields[] = {{"same_host", &links.same_host},
                    {"same_rack", &links.same_rack},
                    {"cross_rack", &links.cross_rack}};
  for (const auto& entry : table) {
    const std::string key = entry.first.as<std::string>("");
    bool known = false;
    for (const Field& field : fields) known |= key == field.name;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(source, entry.first), ": unknown link '", key,
                       "', expected same_host, same_rack or cross_rack"));
    }
  }
  for (const Field& field : fields) {
    const YAML::Node node = table[field.name];
    if (!node) continue;
    if (!node.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(source, node), ": links.", field.name,
                       " must be a mapping with gigabytes_per_second and latency_us"));
    }
    for (const auto& entry : node) {
      const std::string key = entry.first.as<std::string>("");
      if (key != "gigabytes_per_second" && key != "latency_us") {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(source, entry.first), ": unknown key links.", field.name, ".", key,
                         ", expected gigabytes_per_second or latency_us"));
      }
    }
    absl::Status status = ReadNumber(source, node, field.name, "gigabytes_per_second", 1e9,
                                     &field.link->bytes_per_second);
    if (!status.ok()) return status;
    status = ReadNumber(source, node, field.name, "latency_us", 1e-6, &field.link->latency_seconds);
    if (!status.ok()) return status;
  }
  absl::Status valid = ValidateLinkTable(links);
  if (!valid.ok())
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ": ", valid.message()));
  return links;
}

}  // namespace

absl::StatusOr<LinkTable> ParseLinkTable(std::string_view yaml, std::string_view source) {
  // yaml-cpp reports through exceptions; none may cross this boundary.
  try {
    return ParseLinkTableOrThrow(yaml, source);
  } catch (const YAML::Exception& error) {
    return absl::InvalidArgumentError(absl::StrCat(Sv(source), ":", error.mark.line + 1,
                                                   ": not a valid link table: ", error.msg));
  }
}

Location LocationInterner::Intern(std::string_view host, std::string_view rack) {
  Location location;
  if (!host.empty()) {
    auto [it, inserted] =
        hosts_.try_emplace(std::string(host), static_cast<int32_t>(hosts_.size()));
    location.host = it->second;
  }
  if (!rack.empty()) {
    auto [it, inserted] =
        racks_.try_emplace(std::string(rack), static_cast<int32_t>(racks_.size()));
    location.rack = it->second;
  }
  return location;
}

}  // namespace tandem::router
