#include "worker/options.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "kv/auth.h"

namespace tandem::worker {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kPrefill:
      return "prefill";
    case Role::kDecode:
      return "decode";
    case Role::kBoth:
      return "both";
  }
  return "both";
}

absl::StatusOr<Role> ParseRole(absl::string_view text) {
  if (text == "prefill") return Role::kPrefill;
  if (text == "decode") return Role::kDecode;
  if (text == "both") return Role::kBoth;
  return absl::InvalidArgumentError(
      absl::StrCat("--role: '", text, "' is not a role; expected prefill, decode or both"));
}

absl::StatusOr<PrefillFallback> ParsePrefillFallback(absl::string_view text) {
  if (text == "local") return PrefillFallback::kLocal;
  if (text == "fail") return PrefillFallback::kFail;
  return absl::InvalidArgumentError(
      absl::StrCat("--prefill-fallback: '", text, "' is not a policy; expected local or fail"));
}

std::string HostPort::ToString() const {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

absl::StatusOr<HostPort> ParseHostPort(absl::string_view text, absl::string_view flag) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": '", text, "' ", why, "; expected HOST:PORT, e.g. 127.0.0.1:8101"));
  };
  HostPort out;
  absl::string_view port_text;
  if (absl::StartsWith(text, "[")) {
    size_t close = text.find(']');
    if (close == absl::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("has an unterminated IPv6 host");
    }
    out.host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == absl::string_view::npos) return bad("has no port");
    out.host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
  }
  if (out.host.empty()) return bad("has no host");
  if (!absl::SimpleAtoi(port_text, &out.port) || out.port < 0 || out.port > 65535) {
    return bad("has no valid port (0..65535)");
  }
  return out;
}

bool IsLoopbackHost(absl::string_view host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

bool IsWildcardHost(absl::string_view host) {
  return host == "0.0.0.0" || host == "::" || host.empty();
}

absl::StatusOr<Location> ParseLocation(absl::string_view text) {
  Location location;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(item, absl::MaxSplits('=', 1));
    absl::string_view key = absl::StripAsciiWhitespace(kv.first);
    absl::string_view value = absl::StripAsciiWhitespace(kv.second);
    if (key == "host") {
      location.host = std::string(value);
    } else if (key == "rack") {
      location.rack = std::string(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("--location: unknown key '", key, "' in '",
                                                     text, "'; expected host=NAME,rack=NAME"));
    }
  }
  return location;
}

namespace {

absl::StatusOr<std::string> DefaultTokenFromFile(Env& env) {
  std::optional<std::string> home = env.GetVar("HOME");
  if (!home.has_value() || home->empty()) {
    return absl::InvalidArgumentError(
        "no cluster token: set --cluster-token or TANDEM_CLUSTER_TOKEN (HOME is unset, so the "
        "per-user default token file cannot be used)");
  }
  const std::string dir = absl::StrCat(*home, "/.tandem");
  const std::string path = dir + "/cluster-token";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create ", dir, " for the default cluster token: ", strerror(errno)));
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    std::string token = absl::StrCat(
        absl::Hex(kv::RandomU64(), absl::kZeroPad16), absl::Hex(kv::RandomU64(), absl::kZeroPad16),
        absl::Hex(kv::RandomU64(), absl::kZeroPad16), absl::Hex(kv::RandomU64(), absl::kZeroPad16));
    bool ok = ::write(fd, token.data(), token.size()) == static_cast<ssize_t>(token.size());
    ::close(fd);
    if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path, ": ", strerror(errno)));
  }
  if (info.st_uid != ::getuid() || (info.st_mode & 077) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path,
                     " is readable by other users or owned by another user; make it mode "
                     "0600 or set --cluster-token"));
  }
  absl::StatusOr<std::string> text = env.ReadFile(path);
  if (!text.ok()) return text.status();
  std::string token(absl::StripAsciiWhitespace(*text));
  if (token.empty()) return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  return token;
}

}  // namespace

absl::StatusOr<std::string> ResolveClusterToken(const std::string& given, bool all_loopback,
                                                Env& env) {
  if (!given.empty()) return given;
  if (!all_loopback) {
    return absl::InvalidArgumentError(
        "no cluster token: a worker listening beyond loopback needs --cluster-token or "
        "TANDEM_CLUSTER_TOKEN (the same value on every worker and on the router)");
  }
  return DefaultTokenFromFile(env);
}

}  // namespace tandem::worker
