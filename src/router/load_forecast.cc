#include "router/load_forecast.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tandem::router {

absl::Status LoadForecast::OnRouted(uint64_t request_id, const RoutedLoad& load) {
  auto [it, inserted] = requests_.try_emplace(request_id);
  if (!inserted) {
    return absl::AlreadyExistsError(absl::StrCat("load forecast: request ", request_id,
                                                 " is already routed; finish it before rerouting"));
  }
  Request& request = it->second;
  request.decode_worker = load.decode_worker;
  request.extra_decode_blocks =
      std::max<int64_t>(load.decode_blocks - static_cast<int64_t>(load.prompt_blocks.size()), 0);
  request.prefill_worker = load.prefill_worker;
  request.prefill_tokens = std::max<int64_t>(load.prefill_tokens, 0);
  request.prefill_pending = load.prefill_worker.has_value();
  const size_t n = load.prompt_blocks.size();
  size_t previous = 0;  // blocks covered by earlier anchors
  for (size_t i = kAnchorStride - 1; i < n + kAnchorStride - 1; i += kAnchorStride) {
    const size_t at = std::min(i, n - 1);
    request.anchors.push_back({load.prompt_blocks[at], static_cast<int32_t>(at + 1 - previous)});
    previous = at + 1;
  }

  load_[load.decode_worker].decode_blocks += request.extra_decode_blocks;
  AddPredicted(load.decode_worker, request.anchors, /*decode=*/true);
  if (request.prefill_pending) {
    Load& prefill = load_[*load.prefill_worker];
    ++prefill.prefill_requests;
    prefill.prefill_tokens += request.prefill_tokens;
    AddPredicted(*load.prefill_worker, request.anchors, /*decode=*/false);
  }
  return absl::OkStatus();
}

void LoadForecast::ReleasePrefill(Request& request) {
  if (!request.prefill_pending) return;
  request.prefill_pending = false;
  auto it = load_.find(*request.prefill_worker);
  if (it == load_.end()) return;
  --it->second.prefill_requests;
  it->second.prefill_tokens -= request.prefill_tokens;
}

void LoadForecast::OnPrefillDone(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it != requests_.end()) ReleasePrefill(it->second);
}

void LoadForecast::OnFinished(uint64_t request_id) {
  auto it = requests_.find(request_id);
  if (it == requests_.end()) return;
  Request& request = it->second;
  ReleasePrefill(request);
  if (auto load = load_.find(request.decode_worker); load != load_.end()) {
    load->second.decode_blocks -= request.extra_decode_blocks;
  }
  DropPredicted(request.decode_worker, request.anchors, /*decode=*/true);
  // The prefill worker's copy of the prompt is predicted until the request ends: by then its
  // own KV events have reported what it really kept.
  if (request.prefill_worker) {
    DropPredicted(*request.prefill_worker, request.anchors, /*decode=*/false);
  }
  for (WorkerId worker :
       {request.decode_worker, request.prefill_worker.value_or(request.decode_worker)}) {
    auto load = load_.find(worker);
    if (load != load_.end() && load->second.decode_blocks == 0 &&
        load->second.prefill_requests == 0 && load->second.prefill_tokens == 0) {
      load_.erase(load);
    }
  }
  requests_.erase(it);
}

LoadForecast::WorkerLoad LoadForecast::LoadOf(WorkerId worker) const {
  auto it = load_.find(worker);
  return it == load_.end() ? WorkerLoad{} : it->second;
}

int64_t LoadForecast::DecodeBlocks(WorkerId worker) const {
  auto it = load_.find(worker);
  return it == load_.end() ? 0 : it->second.decode_blocks;
}

int32_t LoadForecast::PrefillRequests(WorkerId worker) const {
  auto it = load_.find(worker);
  return it == load_.end() ? 0 : it->second.prefill_requests;
}

int64_t LoadForecast::PrefillTokens(WorkerId worker) const {
  auto it = load_.find(worker);
  return it == load_.end() ? 0 : it->second.prefill_tokens;
}

void LoadForecast::AddPredicted(WorkerId worker, std::span<const Anchor> anchors, bool decode) {
  for (const Anchor& anchor : anchors) {
    Holders& holders = predicted_[anchor.hash];
    auto it = std::find_if(holders.begin(), holders.end(),
                           [worker](const Holder& h) { return h.worker == worker; });
    if (it == holders.end()) {
      holders.push_back({worker, 0, 0, 0});
      it = holders.end() - 1;
    }
    if (decode) {
      if (it->decode_refs++ == 0) {
        it->decode_counted_blocks = anchor.blocks;
        load_[worker].decode_blocks += anchor.blocks;
      }
    } else {
      ++it->prefill_refs;
    }
  }
}

void LoadForecast::DropPredicted(WorkerId worker, std::span<const Anchor> anchors, bool decode) {
  for (const Anchor& anchor : anchors) {
    auto found = predicted_.find(anchor.hash);
    if (found == predicted_.end()) continue;
    Holders& holders = found->second;
    auto it = std::find_if(holders.begin(), holders.end(),
                           [worker](const Holder& h) { return h.worker == worker; });
    if (it == holders.end()) continue;
    if (decode) {
      if (it->decode_refs > 0 && --it->decode_refs == 0) {
        load_[worker].decode_blocks -= it->decode_counted_blocks;
      }
    } else if (it->prefill_refs > 0) {
      --it->prefill_refs;
    }
    if (it->decode_refs == 0 && it->prefill_refs == 0) holders.erase(it);
    if (holders.empty()) predicted_.erase(found);
  }
}

void LoadForecast::MergePredictedOverlap(std::span<const BlockHash> prompt_blocks,
                                         OverlapScores* scores) const {
  const size_t n = prompt_blocks.size();
  if (predicted_.empty() || n == 0) return;
  // Walk the prompt's anchor positions; a worker matching the anchor at position `at` holds
  // blocks 0..at. The walk stops at the first anchor nobody holds: every in-flight prompt
  // sharing a later anchor would also have recorded this one.
  absl::InlinedVector<std::pair<WorkerId, int32_t>, 8> matching;
  int32_t previous_end = 0;
  for (size_t i = kAnchorStride - 1; i < n + kAnchorStride - 1; i += kAnchorStride) {
    const size_t at = std::min(i, n - 1);
    auto found = predicted_.find(prompt_blocks[at]);
    if (found == predicted_.end()) break;
    const int32_t end = static_cast<int32_t>(at + 1);
    bool advanced = false;
    for (const Holder& holder : found->second) {
      const WorkerId worker = holder.worker;
      auto it = std::find_if(matching.begin(), matching.end(),
                             [worker](const auto& entry) { return entry.first == worker; });
      if (previous_end == 0 && it == matching.end()) {
        matching.emplace_back(worker, end);
        advanced = true;
      } else if (it != matching.end() && it->second == previous_end) {
        it->second = end;
        advanced = true;
      }
    }
    if (!advanced) break;
    previous_end = end;
  }
  for (const auto& entry_matched : matching) {
    const WorkerId worker = entry_matched.first;
    const int32_t length = entry_matched.second;
    auto it = std::find_if(scores->blocks.begin(), scores->blocks.end(),
                           [worker](const auto& entry) { return entry.first == worker; });
    if (it == scores->blocks.end()) {
      scores->blocks.emplace_back(worker, length);
    } else {
      it->second = std::max(it->second, length);
    }
  }
}

}  // namespace tandem::router
