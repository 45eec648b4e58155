#include "kv/shared_segment.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kv/auth.h"

namespace tandem::kv {
namespace {

constexpr uint64_t kSegmentMagic = 0x544b'5653'4547'3031;  // "TKVSEG01"

struct Header {
  uint64_t magic;
  uint64_t cookie;
  uint64_t size;
};

absl::Status Errno(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<SharedSegment>> SharedSegment::Create(size_t bytes) {
  uint64_t cookie = RandomU64();
  std::string name = absl::StrCat("/tandem-kv-", getpid(), "-", absl::Hex(cookie));
  size_t size = kHeaderBytes + bytes;
  int fd = shm_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  if (fd < 0) return Errno(absl::StrCat("shm_open('", name, "')"));
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    absl::Status status = Errno(absl::StrCat("cannot size shared segment '", name, "' to ", size,
                                             " bytes (is /dev/shm large enough?)"));
    close(fd);
    shm_unlink(name.c_str());
    return status;
  }
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (data == MAP_FAILED) {
    absl::Status status = Errno(absl::StrCat("mmap of shared segment '", name, "'"));
    shm_unlink(name.c_str());
    return status;
  }
  auto* header = static_cast<Header*>(data);
  header->magic = kSegmentMagic;
  header->cookie = cookie;
  header->size = size;
  return std::unique_ptr<SharedSegment>(
      new SharedSegment(name, cookie, static_cast<uint8_t*>(data), size, true));
}

absl::StatusOr<std::unique_ptr<SharedSegment>> SharedSegment::Open(const std::string& name,
                                                                   uint64_t cookie) {
  if (name.empty() || name[0] != '/' || name.find('/', 1) != std::string::npos ||
      name.size() > 255) {
    return absl::InvalidArgumentError(absl::StrCat("bad shared segment name '", name, "'"));
  }
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return Errno(absl::StrCat("shm_open('", name, "')"));
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < kHeaderBytes) {
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrCat("shared segment '", name, "' is smaller than its header"));
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* data = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (data == MAP_FAILED) return Errno(absl::StrCat("mmap of shared segment '", name, "'"));
  const auto* header = static_cast<const Header*>(data);
  if (header->magic != kSegmentMagic || header->cookie != cookie || header->size != size) {
    munmap(data, size);
    return absl::FailedPreconditionError(
        absl::StrCat("shared segment '", name, "' is not the one the peer announced"));
  }
  return std::unique_ptr<SharedSegment>(
      new SharedSegment(name, cookie, static_cast<uint8_t*>(data), size, false));
}

int SharedSegment::RemoveStaleSegments() {
  int removed = 0;
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return 0;
  while (dirent* entry = readdir(dir)) {
    std::string_view file = entry->d_name;
    if (file.substr(0, 10) != "tandem-kv-") continue;
    std::vector<std::string> parts = absl::StrSplit(std::string(file.substr(10)), '-');
    int pid = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) continue;
    if (kill(pid, 0) == 0 || errno == EPERM) continue;  // still running
    if (shm_unlink(("/" + std::string(file)).c_str()) == 0) ++removed;
  }
  closedir(dir);
  return removed;
}

SharedSegment::~SharedSegment() {
  munmap(data_, size_);
  if (owner_) shm_unlink(name_.c_str());
}

}  // namespace tandem::kv
