// Page-level control of the engine's large, long-lived memory (KV pool, weights): transparent
// huge pages for buffers read all over on every step, and locking in RAM for deployments where
// the kernel must not page weights or KV out under memory pressure.
#pragma once

#include <cstddef>

#include "absl/status/status.h"

namespace tandem::engine {

// The x86-64 huge page size; allocations that want huge pages align to it.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Asks the kernel to back the whole huge pages within [p, p + bytes) with huge pages
// (madvise MADV_HUGEPAGE), before they are first touched. A hint: where transparent huge pages
// are off, or the kernel has none free, the range keeps small pages. Partial huge pages at
// either end are left alone, so the resident size never grows past what is touched. With
// 4 KiB pages, reads all over a large buffer miss the TLB far more often than the caches.
void AdviseHugePages(void* p, size_t bytes);

// Locks the pages holding [p, p + bytes) in RAM (mlock): they are faulted in now and never
// paged out (file-backed pages are not dropped from the page cache either) until unlocked.
// FailedPrecondition, naming the limit, when the process may not lock that much
// (RLIMIT_MEMLOCK, `ulimit -l`; CAP_IPC_LOCK lifts it); ResourceExhausted when the memory is
// not there.
absl::Status LockPages(const void* p, size_t bytes);
// Undoes LockPages for the same range. Locks do not nest: a page shared with another locked
// range is unlocked for both.
void UnlockPages(const void* p, size_t bytes);

}  // namespace tandem::engine
