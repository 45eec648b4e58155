// Transparent huge pages for the engine's large, long-lived buffers (KV pool, packed weights),
// which are read all over on every step: with 4 KiB pages their reads miss the TLB far more
// often than they miss the caches.
#pragma once

#include <cstddef>

namespace tandem::engine {

// The x86-64 huge page size; allocations that want huge pages align to it.
inline constexpr size_t kHugePageBytes = size_t{2} << 20;

// Asks the kernel to back the whole huge pages within [p, p + bytes) with huge pages
// (madvise MADV_HUGEPAGE), before they are first touched. A hint: where transparent huge pages
// are off, or the kernel has none free, the range keeps small pages. Partial huge pages at
// either end are left alone, so the resident size never grows past what is touched.
void AdviseHugePages(void* p, size_t bytes);

}  // namespace tandem::engine
