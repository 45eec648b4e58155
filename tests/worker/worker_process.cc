#include "worker_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "net/sse.h"

namespace tandem::worker::testing {

using nlohmann::json;

int PickFreePort(const std::string& host) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  ::inet_pton(AF_INET, host.c_str(), &address.sin_addr);
  address.sin_port = 0;
  int port = 0;
  int bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  if (bound != 0) {  // not an address of this namespace: any free number will do
    address.sin_addr.s_addr = htonl(INADDR_ANY);
    bound = ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  }
  if (bound == 0) {
    socklen_t length = sizeof(address);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

WorkerProcess::WorkerProcess(WorkerConfig config) : config_(std::move(config)) {}

std::unique_ptr<WorkerProcess> WorkerProcess::Start(WorkerConfig config) {
  std::unique_ptr<WorkerProcess> worker(new WorkerProcess(std::move(config)));
  const bool fixed_ports = worker->config_.port != 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (!fixed_ports) {
      worker->config_.port = PickFreePort(worker->config_.host);
      worker->config_.kv_port = PickFreePort(worker->config_.host);
    }
    if (worker->Launch() && worker->WaitReady(absl::Seconds(60))) return worker;
    worker->Signal(SIGKILL);
    worker->Wait(absl::Seconds(5));
    if (fixed_ports) break;
  }
  ADD_FAILURE() << "worker did not become ready; its log:\n" << worker->Log();
  return nullptr;
}

WorkerProcess::~WorkerProcess() {
  Signal(SIGKILL);
  Wait(absl::Seconds(10));
  if (!log_path_.empty()) ::unlink(log_path_.c_str());
}

bool WorkerProcess::Launch() {
  const char* binary = std::getenv("TANDEM_BINARY");
  if (binary == nullptr) {
    ADD_FAILURE() << "TANDEM_BINARY is not set (run through ctest)";
    return false;
  }
  if (log_path_.empty()) {
    char path[] = "/tmp/tandem-worker-test-XXXXXX";
    int fd = ::mkstemp(path);
    ::close(fd);
    log_path_ = path;
  }
  url_ = absl::StrCat("http://", config_.host, ":", config_.port);
  std::vector<std::string> args = config_.prefix;
  args.push_back(binary);
  for (std::string arg :
       {std::string("worker"), std::string("--role"), config_.role, std::string("--model"),
        config_.model, std::string("--listen"), absl::StrCat(config_.host, ":", config_.port),
        std::string("--kv-listen"), absl::StrCat(config_.host, ":", config_.kv_port),
        std::string("--cluster-token"), config_.token, std::string("--threads"), std::string("1"),
        std::string("--kv-budget"), std::string("33554432"), std::string("--http-threads"),
        std::string("1")}) {
    args.push_back(arg);
  }
  args.insert(args.end(), config_.extra.begin(), config_.extra.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    int fd = ::open(log_path_.c_str(), O_WRONLY | O_APPEND | O_CREAT, 0600);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid_ > 0;
}

bool WorkerProcess::WaitReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    absl::StatusOr<net::HttpResult> ready =
        Call("GET", url_ + "/ready", "", kToken, absl::Seconds(1));
    if (ready.ok() && ready->status == 200) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return false;
}

std::string WorkerProcess::Log() const {
  std::ifstream in(log_path_);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WorkerProcess::Signal(int signal) {
  if (pid_ > 0) ::kill(pid_, signal);
}

int WorkerProcess::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -1;
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    int status = 0;
    pid_t done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (absl::Now() >= deadline) return -1;
    absl::SleepFor(absl::Milliseconds(10));
  }
}

bool WorkerProcess::Restart() {
  Signal(SIGKILL);
  Wait(absl::Seconds(10));
  for (int attempt = 0; attempt < 50; ++attempt) {  // the ports may linger briefly
    if (Launch() && WaitReady(absl::Seconds(60))) return true;
    Signal(SIGKILL);
    Wait(absl::Seconds(5));
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

absl::StatusOr<net::HttpResult> Call(const std::string& method, const std::string& url,
                                     const std::string& body, const std::string& token,
                                     absl::Duration timeout) {
  net::HttpClientRequest request;
  request.method = method;
  request.url = url;
  request.body = body;
  if (!token.empty()) request.headers.push_back({"Authorization", "Bearer " + token});
  request.timeout = timeout;
  return net::HttpClient::Fetch(request);
}

Generation Generate(const std::string& url, const json& request) {
  Generation g;
  absl::StatusOr<net::HttpResult> result = Call("POST", url + "/v1/generate", request.dump());
  if (!result.ok()) {
    g.error = {{"transport", result.status().ToString()}};
    return g;
  }
  g.http_status = result->status;
  if (result->status != 200) {
    g.error = json::parse(result->body, nullptr, false);
    return g;
  }
  net::SseParser parser([&](const net::SseEvent& event) {
    json data = json::parse(event.data, nullptr, false);
    if (data.contains("token")) {
      g.tokens.push_back(data["token"].get<int32_t>());
    } else if (data.contains("finish_reason")) {
      g.finish = data;
    } else if (data.contains("error")) {
      g.error = data;
    }
  });
  parser.Feed(result->body);
  return g;
}

json Info(const std::string& url) {
  absl::StatusOr<net::HttpResult> result =
      Call("GET", url + "/v1/info", "", kToken, absl::Seconds(5));
  if (!result.ok() || result->status != 200) return json();
  return json::parse(result->body, nullptr, false);
}

double Metric(const std::string& url, const std::string& name,
              const std::vector<std::string>& labels) {
  absl::StatusOr<net::HttpResult> result = Call("GET", url + "/metrics", "", "", absl::Seconds(5));
  if (!result.ok()) return -1;
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(result->body, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    size_t name_end = line.find_first_of("{ ");
    if (line.substr(0, name_end) != name) continue;
    bool match = true;
    for (const std::string& label : labels) match &= line.find(label) != absl::string_view::npos;
    if (!match) continue;
    sum += std::strtod(std::string(line.substr(line.rfind(' ') + 1)).c_str(), nullptr);
  }
  return sum;
}

bool PoolIsClean(const std::string& url, absl::Duration timeout, std::string* last_info) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    json info = Info(url);
    if (last_info != nullptr) *last_info = info.dump();
    if (info.is_object() && info.contains("kv")) {
      const json& kv = info["kv"];
      if (kv["used_blocks"] == 0 && kv["reserved_blocks"] == 0 && kv["open_reservations"] == 0 &&
          info["requests"]["generate"] == 0 && info["requests"]["prefill"] == 0) {
        return true;
      }
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::vector<int32_t> MakePrompt(int length, uint64_t seed, int vocab) {
  std::vector<int32_t> tokens;
  tokens.reserve(length);
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < length; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    tokens.push_back(static_cast<int32_t>((state >> 33) % vocab));
  }
  return tokens;
}

}  // namespace tandem::worker::testing
