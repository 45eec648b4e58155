#include "engine/page_memory.h"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tandem::engine {

namespace {

// The whole pages covering [p, p + bytes).
std::pair<void*, size_t> PageRange(const void* p, size_t bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(p) / page * page;
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes + page - 1) / page * page;
  return {reinterpret_cast<void*>(begin), end - begin};
}

}  // namespace

void AdviseHugePages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  const uintptr_t begin =
      (reinterpret_cast<uintptr_t>(p) + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHugePageBytes - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

absl::Status LockPages(const void* p, size_t bytes) {
  if (p == nullptr || bytes == 0) return absl::OkStatus();
  const auto [begin, length] = PageRange(p, bytes);
  if (::mlock(begin, length) == 0) return absl::OkStatus();
  const int error = errno;
  if (error == EPERM || (error == ENOMEM && ::geteuid() != 0)) {
    struct rlimit limit {};
    ::getrlimit(RLIMIT_MEMLOCK, &limit);
    const std::string allowed = limit.rlim_cur == RLIM_INFINITY
                                    ? std::string("unlimited")
                                    : absl::StrCat(limit.rlim_cur, " bytes");
    return absl::FailedPreconditionError(
        absl::StrCat("cannot lock ", length, " bytes in memory (", std::strerror(error),
                     "): this process may lock ", allowed,
                     " in all (RLIMIT_MEMLOCK); raise it (ulimit -l, LimitMEMLOCK= in systemd, "
                     "securityContext capabilities IPC_LOCK in Kubernetes) or do not lock"));
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("cannot lock ", length, " bytes in memory: ", std::strerror(error)));
}

void UnlockPages(const void* p, size_t bytes) {
  if (p == nullptr || bytes == 0) return;
  const auto [begin, length] = PageRange(p, bytes);
  ::munlock(begin, length);
}

}  // namespace tandem::engine
