#include "core/env.h"

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace tandem {
namespace {

class PosixEnv : public Env {
 public:
  absl::Time Now() override { return absl::Now(); }

  int64_t NowMicros() override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

  void SleepFor(absl::Duration duration) override { absl::SleepFor(duration); }

  absl::StatusOr<std::string> ReadFile(const std::string& path) override {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return ErrnoStatus(errno, absl::StrCat("cannot open '", path, "'"));
    }
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad()) return absl::DataLossError(absl::StrCat("error reading '", path, "'"));
    return buffer.str();
  }

  absl::Status WriteFile(const std::string& path, std::string_view contents) override {
    std::string temp = absl::StrCat(path, ".tmp.", getpid());
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      if (!out) return ErrnoStatus(errno, absl::StrCat("cannot create '", temp, "'"));
      out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
      if (!out.flush()) {
        std::remove(temp.c_str());
        return absl::DataLossError(absl::StrCat("error writing '", temp, "'"));
      }
    }
    if (std::rename(temp.c_str(), path.c_str()) != 0) {
      int error = errno;
      std::remove(temp.c_str());
      return ErrnoStatus(error, absl::StrCat("cannot rename '", temp, "' to '", path, "'"));
    }
    return absl::OkStatus();
  }

  bool FileExists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  std::optional<std::string> GetVar(const std::string& name) override {
    const char* value = std::getenv(name.c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  }

 private:
  static absl::Status ErrnoStatus(int error, absl::string_view what) {
    std::string message = absl::StrCat(what, ": ", std::strerror(error));
    if (error == ENOENT) return absl::NotFoundError(message);
    if (error == EACCES || error == EPERM) return absl::PermissionDeniedError(message);
    return absl::UnavailableError(message);
  }
};

}  // namespace

Env& Env::Default() {
  static Env* env = new PosixEnv();
  return *env;
}

FakeEnv::FakeEnv(absl::Time start) : now_(start) {}

void FakeEnv::Advance(absl::Duration duration) {
  absl::MutexLock lock(&mu_);
  now_ += duration;
  micros_ += absl::ToInt64Microseconds(duration);
}

void FakeEnv::SetFile(const std::string& path, std::string contents) {
  absl::MutexLock lock(&mu_);
  files_[path] = std::move(contents);
}

void FakeEnv::SetVar(const std::string& name, std::string value) {
  absl::MutexLock lock(&mu_);
  vars_[name] = std::move(value);
}

absl::Time FakeEnv::Now() {
  absl::MutexLock lock(&mu_);
  return now_;
}

int64_t FakeEnv::NowMicros() {
  absl::MutexLock lock(&mu_);
  return micros_;
}

void FakeEnv::SleepFor(absl::Duration duration) { Advance(duration); }

absl::StatusOr<std::string> FakeEnv::ReadFile(const std::string& path) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(path);
  if (it == files_.end()) return absl::NotFoundError(absl::StrCat("cannot open '", path, "'"));
  return it->second;
}

absl::Status FakeEnv::WriteFile(const std::string& path, std::string_view contents) {
  absl::MutexLock lock(&mu_);
  files_[path] = std::string(contents);
  return absl::OkStatus();
}

bool FakeEnv::FileExists(const std::string& path) {
  absl::MutexLock lock(&mu_);
  return files_.count(path) > 0;
}

std::optional<std::string> FakeEnv::GetVar(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = vars_.find(name);
  if (it == vars_.end()) return std::nullopt;
  return it->second;
}

}  // namespace tandem
