// Prometheus metrics of the KV transfer path (names documented in docs/protocols.md).
//
// Thread-safety: the metric objects are thread-safe.
#pragma once

#include <string_view>

#include "core/metrics.h"
#include "kv/wire.h"

namespace tandem::kv {

class KvMetrics {
 public:
  explicit KvMetrics(MetricsRegistry& registry);

  // `transport` is "tcp" or "shm"; `side` is "send" or "receive".
  void TransferDone(std::string_view side, std::string_view transport, uint64_t bytes,
                    double seconds, bool ok);
  void Refused(RefusalCode code);
  void LeaseExpired() { lease_expirations_.Increment(); }

 private:
  Family<Counter>& bytes_;
  Family<Histogram>& duration_;
  Family<Counter>& transfers_;
  Family<Counter>& refused_;
  Counter& lease_expirations_;
};

}  // namespace tandem::kv
