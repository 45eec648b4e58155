#include "router/worker_registry.h"

#include <algorithm>
#include <limits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace tandem::router {
namespace {

using nlohmann::json;

// Looks `key` up in `body`, then in each nested object named in `sections` (the /v1/info answer
// groups its fields: "kv": {...}, "location": {...}).
const json* FindField(const json& body, std::string_view key,
                      std::initializer_list<std::string_view> sections = {}) {
  auto it = body.find(std::string(key));
  if (it != body.end() && !it->is_null()) return &*it;
  for (std::string_view section : sections) {
    auto s = body.find(std::string(section));
    if (s == body.end() || !s->is_object()) continue;
    auto inner = s->find(std::string(key));
    if (inner != s->end() && !inner->is_null()) return &*inner;
  }
  return nullptr;
}

absl::Status ReadString(const json& body, std::string_view key, std::string* out,
                        std::initializer_list<std::string_view> sections = {}) {
  const json* value = FindField(body, key, sections);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker report: '", std::string(key), "' must be a string"));
  }
  *out = value->get<std::string>();
  return absl::OkStatus();
}

template <typename Int>
absl::Status ReadInt(const json& body, std::string_view key, Int* out,
                     std::initializer_list<std::string_view> sections = {}) {
  const json* value = FindField(body, key, sections);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number_integer() && !value->is_number_unsigned()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker report: '", std::string(key), "' must be an integer"));
  }
  int64_t v = value->is_number_unsigned()
                  ? static_cast<int64_t>(std::min<uint64_t>(value->get<uint64_t>(),
                                                            std::numeric_limits<int64_t>::max()))
                  : value->get<int64_t>();
  if (v < 0 || v > std::numeric_limits<Int>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker report: '", std::string(key), "' is out of range: ", v));
  }
  *out = static_cast<Int>(v);
  return absl::OkStatus();
}

absl::Status ReadBool(const json& body, std::string_view key, bool* out) {
  const json* value = FindField(body, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat("worker report: '", std::string(key), "' must be a boolean"));
  }
  *out = value->get<bool>();
  return absl::OkStatus();
}

// A value as the body has it, cut short for a log line.
std::string Shown(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = absl::StrCat(text.substr(0, 37), "...");
  return text;
}

absl::StatusOr<int64_t> PositiveKvField(const json& kv, const char* key) {
  auto it = kv.find(key);
  if (it == kv.end() || it->is_null()) {
    return absl::InvalidArgumentError(absl::StrCat("'kv' has no '", key, "'"));
  }
  if (!it->is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.", key, " is ", Shown(*it), ", not an integer"));
  }
  if (it->is_number_unsigned()) {  // JSON's non-negative integers
    const uint64_t value = it->get<uint64_t>();
    if (value >= 1 && value <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return static_cast<int64_t>(value);
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("kv.", key, " is ", Shown(*it), ", expected a positive integer"));
}

// KV bytes per token from a `/v1/info` body's "kv" object: block_bytes (one block over all
// layers, K and V) / block_size (its tokens). 0 when there is no "kv" object.
absl::StatusOr<int64_t> KvBytesPerTokenOf(const json& body) {
  auto kv = body.find("kv");
  if (kv == body.end() || kv->is_null()) return 0;
  if (!kv->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("'kv' is ", Shown(*kv), ", not an object"));
  }
  TANDEM_ASSIGN_OR_RETURN(const int64_t block_bytes, PositiveKvField(*kv, "block_bytes"));
  TANDEM_ASSIGN_OR_RETURN(const int64_t block_size, PositiveKvField(*kv, "block_size"));
  if (block_bytes % block_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("kv.block_bytes ", block_bytes,
                                                   " is not a whole number of bytes per token "
                                                   "of kv.block_size ",
                                                   block_size));
  }
  const int64_t bytes_per_token = block_bytes / block_size;
  if (bytes_per_token > kMaxKvBytesPerToken) {
    return absl::InvalidArgumentError(
        absl::StrCat("kv.block_bytes / kv.block_size is ", bytes_per_token,
                     " bytes per token, more than the router accepts (", kMaxKvBytesPerToken, ")"));
  }
  return bytes_per_token;
}

}  // namespace

std::string NormalizeWorkerUrl(std::string_view url) {
  std::string out(url);
  while (!out.empty() && out.back() == '/') out.pop_back();
  if (!absl::StartsWith(out, "http://") && !absl::StartsWith(out, "https://")) {
    out = absl::StrCat("http://", out);
  }
  return out;
}

absl::StatusOr<WorkerReport> ParseWorkerReport(std::string_view body,
                                               std::string_view url_fallback) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    return absl::InvalidArgumentError("worker report: the body must be a JSON object");
  }
  WorkerReport report;
  std::string url;
  if (absl::Status s = ReadString(parsed, "url", &url); !s.ok()) return s;
  if (url.empty()) url = std::string(url_fallback);
  if (url.empty()) return absl::InvalidArgumentError("worker report: 'url' is required");
  report.url = NormalizeWorkerUrl(url);

  std::string role = "both";
  if (absl::Status s = ReadString(parsed, "role", &role); !s.ok()) return s;
  if (role == "prefill") {
    report.role = WorkerRole::kPrefill;
  } else if (role == "decode") {
    report.role = WorkerRole::kDecode;
  } else if (role == "both") {
    report.role = WorkerRole::kBoth;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "worker report: role '", role, "' is not known (expected prefill, decode or both)"));
  }
  if (absl::Status s = ReadString(parsed, "epoch", &report.epoch); !s.ok()) return s;
  if (report.epoch.empty()) return absl::InvalidArgumentError("worker report: 'epoch' is required");
  if (absl::Status s = ReadString(parsed, "model", &report.model); !s.ok()) return s;
  // /v1/info has no "ready" field: answering it at all says the process serves.
  report.ready = !parsed.contains("ready");
  if (absl::Status s = ReadBool(parsed, "ready", &report.ready); !s.ok()) return s;
  if (absl::Status s = ReadBool(parsed, "draining", &report.draining); !s.ok()) return s;
  const json* kv_address = FindField(parsed, "kv_address");
  if (kv_address == nullptr) kv_address = FindField(parsed, "address", {"kv"});
  if (kv_address != nullptr && kv_address->is_string()) report.kv_address = *kv_address;
  if (absl::Status s = ReadString(parsed, "host", &report.host, {"location"}); !s.ok()) return s;
  if (absl::Status s = ReadString(parsed, "rack", &report.rack, {"location"}); !s.ok()) return s;
  for (auto [key, out] : {std::pair{"capacity_blocks", &report.capacity_blocks},
                          std::pair{"active_blocks", &report.active_blocks},
                          std::pair{"prefill_queue_tokens", &report.prefill_queue_tokens}}) {
    if (absl::Status s = ReadInt(parsed, key, out, {"kv", "load"}); !s.ok()) return s;
  }
  if (absl::Status s =
          ReadInt(parsed, "prefill_queue_requests", &report.prefill_queue_requests, {"load"});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ReadInt(parsed, "block_size", &report.block_size, {"kv"}); !s.ok()) {
    return s;
  }
  if (absl::StatusOr<int64_t> bytes = KvBytesPerTokenOf(parsed); bytes.ok()) {
    report.kv_bytes_per_token = *bytes;
  } else {
    report.kv_layout_error = std::string(bytes.status().message());
  }
  return report;
}

absl::StatusOr<RegistryChange> WorkerRegistry::Report(const WorkerReport& report,
                                                      int64_t now_micros, bool from_static_list) {
  RegistryChange change;
  auto it = by_url_.find(report.url);
  if (it == by_url_.end()) {
    if (by_url_.size() >= options_.max_workers) {
      return absl::ResourceExhaustedError(absl::StrCat("the router tracks ", options_.max_workers,
                                                       " workers already; refusing ", report.url));
    }
    RegisteredWorker worker;
    worker.id = next_id_++;
    worker.from_static_list = from_static_list;
    it = by_url_.emplace(report.url, std::move(worker)).first;
    url_of_[it->second.id] = report.url;
    change.added = true;
  } else if (it->second.report.epoch != report.epoch) {
    // A new process at the same address: its KV cache starts empty.
    change.retired = it->second.id;
    url_of_.erase(it->second.id);
    it->second.id = next_id_++;
    url_of_[it->second.id] = report.url;
    change.added = true;
  }
  RegisteredWorker& worker = it->second;
  if (change.retired) {
    // The new process may run another model or KV type.
    worker.kv_bytes_per_token = 0;
    worker.kv_layout_error.clear();
  }
  worker.report = report;
  worker.location = locations_.Intern(report.host, report.rack);
  worker.from_static_list = worker.from_static_list || from_static_list;
  worker.failed = false;
  worker.last_report_micros = now_micros;
  change.id = worker.id;
  return change;
}

bool WorkerRegistry::MarkFailed(WorkerId id) {
  auto url = url_of_.find(id);
  if (url == url_of_.end()) return false;
  by_url_.at(url->second).failed = true;
  return true;
}

std::vector<WorkerId> WorkerRegistry::Expire(int64_t now_micros) {
  std::vector<WorkerId> gone;
  for (auto it = by_url_.begin(); it != by_url_.end();) {
    if (now_micros - it->second.last_report_micros > options_.heartbeat_timeout_micros) {
      gone.push_back(it->second.id);
      url_of_.erase(it->second.id);
      by_url_.erase(it++);
    } else {
      ++it;
    }
  }
  return gone;
}

KvLayoutChange WorkerRegistry::LearnKvLayout(const WorkerReport& info) {
  KvLayoutChange change;
  auto it = by_url_.find(info.url);
  if (it == by_url_.end() || it->second.report.epoch != info.epoch) return change;
  RegisteredWorker& worker = it->second;
  std::string error = info.kv_layout_error;
  if (error.empty() && info.kv_bytes_per_token <= 0) {
    if (!info.ready) return change;  // still loading: the layout comes with readiness
    error = "its /v1/info has no 'kv' object with 'block_bytes' and 'block_size'";
  }
  if (!error.empty()) {
    change.rejected = error != worker.kv_layout_error;
    change.error = error;
    worker.kv_layout_error = std::move(error);
    return change;
  }
  worker.kv_layout_error.clear();
  if (worker.kv_bytes_per_token == info.kv_bytes_per_token) return change;
  worker.kv_bytes_per_token = info.kv_bytes_per_token;
  change.learned = true;
  for (const auto& [url, other] : by_url_) {
    if (other.kv_bytes_per_token > 0 && other.kv_bytes_per_token != worker.kv_bytes_per_token) {
      change.disagreeing.emplace_back(url, other.kv_bytes_per_token);
    }
  }
  std::sort(change.disagreeing.begin(), change.disagreeing.end());
  return change;
}

std::optional<WorkerId> WorkerRegistry::Remove(std::string_view url) {
  auto it = by_url_.find(std::string(url));
  if (it == by_url_.end()) return std::nullopt;
  WorkerId id = it->second.id;
  url_of_.erase(id);
  by_url_.erase(it);
  return id;
}

const RegisteredWorker* WorkerRegistry::Find(WorkerId id) const {
  auto url = url_of_.find(id);
  if (url == url_of_.end()) return nullptr;
  return &by_url_.at(url->second);
}

const RegisteredWorker* WorkerRegistry::FindByUrl(std::string_view url) const {
  auto it = by_url_.find(std::string(url));
  return it == by_url_.end() ? nullptr : &it->second;
}

std::vector<RegisteredWorker> WorkerRegistry::Snapshot() const {
  std::vector<RegisteredWorker> out;
  out.reserve(by_url_.size());
  for (const auto& [url, worker] : by_url_) out.push_back(worker);
  std::sort(out.begin(), out.end(),
            [](const RegisteredWorker& a, const RegisteredWorker& b) { return a.id < b.id; });
  return out;
}

void WorkerRegistry::FillWorkerInfo(std::vector<WorkerInfo>* out) const {
  out->clear();
  for (const auto& [url, worker] : by_url_) {
    const WorkerReport& r = worker.report;
    out->push_back({.id = worker.id,
                    .role = r.role,
                    .ready = r.ready && !worker.failed,
                    .draining = r.draining,
                    .location = worker.location,
                    .reported_active_decode_blocks = r.active_blocks,
                    .capacity_blocks = r.capacity_blocks,
                    .reported_prefill_queue_requests = r.prefill_queue_requests,
                    .reported_prefill_queue_tokens = r.prefill_queue_tokens,
                    .kv_bytes_per_token = worker.kv_bytes_per_token});
  }
  // Map order is arbitrary; ties in the policy are broken by its RNG, but a stable order keeps
  // decisions reproducible for a seed.
  std::sort(out->begin(), out->end(),
            [](const WorkerInfo& a, const WorkerInfo& b) { return a.id < b.id; });
}

WorkerHealth WorkerRegistry::StateOf(const RegisteredWorker& worker) {
  if (worker.report.draining) return WorkerHealth::kDraining;
  if (worker.report.ready && !worker.failed) return WorkerHealth::kReady;
  return WorkerHealth::kNotReady;
}

}  // namespace tandem::router
