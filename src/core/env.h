// Env: the seam in front of the clock, the file system and environment variables.
//
// Production code takes an `Env&` (usually `Env::Default()`); tests pass a `FakeEnv` to control
// time and to fake files and variables without touching the machine.
//
//   Env& env = Env::Default();
//   int64_t start = env.NowMicros();
//   absl::StatusOr<std::string> text = env.ReadFile("spec.yaml");
//
// Thread-safety: Env::Default() is safe to use from any thread. FakeEnv is internally
// synchronized as well.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace tandem {

class Env {
 public:
  virtual ~Env() = default;

  // The process-wide real environment. Never destroyed.
  static Env& Default();

  // Wall-clock time (for timestamps shown to people).
  virtual absl::Time Now() = 0;
  // Monotonic time in microseconds since an arbitrary origin (for durations and deadlines).
  virtual int64_t NowMicros() = 0;
  virtual void SleepFor(absl::Duration duration) = 0;

  virtual absl::StatusOr<std::string> ReadFile(const std::string& path) = 0;
  // Writes atomically: to a temporary file beside `path`, then rename.
  virtual absl::Status WriteFile(const std::string& path, std::string_view contents) = 0;
  virtual bool FileExists(const std::string& path) = 0;

  // The value of an environment variable, or nullopt when it is unset.
  virtual std::optional<std::string> GetVar(const std::string& name) = 0;
};

// An Env for tests: time only moves when told to, files and variables live in memory.
class FakeEnv : public Env {
 public:
  explicit FakeEnv(absl::Time start = absl::FromUnixSeconds(1'700'000'000));

  void Advance(absl::Duration duration);
  void SetFile(const std::string& path, std::string contents);
  void SetVar(const std::string& name, std::string value);

  absl::Time Now() override;
  int64_t NowMicros() override;
  // Advances fake time instead of blocking.
  void SleepFor(absl::Duration duration) override;
  absl::StatusOr<std::string> ReadFile(const std::string& path) override;
  absl::Status WriteFile(const std::string& path, std::string_view contents) override;
  bool FileExists(const std::string& path) override;
  std::optional<std::string> GetVar(const std::string& name) override;

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
  int64_t micros_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, std::string> files_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> vars_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem
