#include "kv/metrics.h"

#include <string>

namespace tandem::kv {

KvMetrics::KvMetrics(MetricsRegistry& registry)
    : bytes_(registry.AddCounter("tandem_kv_transfer_bytes_total",
                                 "KV bytes moved between workers.", {"side", "transport"})),
      duration_(registry.AddHistogram("tandem_kv_transfer_duration_seconds",
                                      "Duration of KV transfers, Begin to Complete.",
                                      ExponentialBuckets(0.0001, 2, 18), {"side", "transport"})),
      transfers_(registry.AddCounter("tandem_kv_transfers_total", "KV transfers by outcome.",
                                     {"side", "transport", "outcome"})),
      refused_(registry.AddCounter("tandem_kv_refused_total",
                                   "KV transfers or connections refused, by reason.", {"reason"})),
      lease_expirations_(registry
                             .AddCounter("tandem_kv_lease_expirations_total",
                                         "Reservations whose lease expired before completion.")
                             .Get()) {}

void KvMetrics::TransferDone(std::string_view side, std::string_view transport, uint64_t bytes,
                             double seconds, bool ok) {
  bytes_.Get(side, transport).Increment(static_cast<double>(bytes));
  duration_.Get(side, transport).Observe(seconds);
  transfers_.Get(side, transport, ok ? std::string_view("ok") : std::string_view("failed"))
      .Increment();
}

void KvMetrics::Refused(RefusalCode code) { refused_.Get(RefusalCodeName(code)).Increment(); }

}  // namespace tandem::kv
