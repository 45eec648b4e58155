// The local connector against a stand-in for the supervisor's control API that answers as
// src/deploy/supervisor.cc does (GET /v1/status, POST /v1/scale, bearer token, error bodies).
#include "planner/local_connector.h"

#include <map>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FakeSupervisor {
 public:
  FakeSupervisor() : server_(net::HttpServerOptions{}) {
    // decode: a role; pd: a scaling group of 2 prefill + 1 decode per replica; router: a role.
    units_ = {{"router", 1}, {"decode", 1}, {"pd", 2}};
    auto authorized = [this](net::HttpExchange& x) {
      const std::string* header = x.request().Header("authorization");
      if (header == nullptr || *header != "Bearer secret") {
        x.ReplyError(401, "missing or wrong bearer token", "unauthorized");
        return false;
      }
      return true;
    };
    server_.Handle("GET", "/v1/status", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
      if (!authorized(*x)) return;
      absl::MutexLock lock(&mu_);
      json units = json::array(), roles = json::array();
      for (const auto& [name, desired] : units_) {
        units.push_back({{"name", name}, {"group", name == "pd"}, {"desired", desired}});
      }
      auto desired = [&](const std::string& unit) { return units_.at(unit); };
      roles.push_back({{"name", "router"}, {"kind", "router"}, {"unit", "router"}, {"desired", 1}});
      if (units_.count("decode")) {
        roles.push_back({{"name", "decode"},
                         {"kind", "decode"},
                         {"unit", "decode"},
                         {"desired", desired("decode")}});
      }
      roles.push_back(
          {{"name", "gp"}, {"kind", "prefill"}, {"unit", "pd"}, {"desired", 2 * desired("pd")}});
      roles.push_back(
          {{"name", "gd"}, {"kind", "decode"}, {"unit", "pd"}, {"desired", desired("pd")}});
      x->ReplyJson(200, json{{"name", "test"}, {"units", units}, {"roles", roles}}.dump());
    });
    server_.Handle("POST", "/v1/scale", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
      if (!authorized(*x)) return;
      json body = json::parse(x->request().body);
      absl::MutexLock lock(&mu_);
      const std::string target = body["target"];
      if (!units_.count(target)) {
        x->ReplyError(404, absl::StrCat("unknown target '", target, "'"), "not_found");
        return;
      }
      units_[target] = body["replicas"];
      calls_.push_back(absl::StrCat(target, "=", body["replicas"].get<int>()));
      x->ReplyJson(200, body.dump());
    });
    EXPECT_TRUE(server_.Start().ok());
  }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", server_.port()); }
  std::vector<std::string> calls() {
    absl::MutexLock lock(&mu_);
    return calls_;
  }
  void Remove(const std::string& unit) {
    absl::MutexLock lock(&mu_);
    units_.erase(unit);
  }

 private:
  net::HttpServer server_;
  absl::Mutex mu_;
  std::map<std::string, int> units_;
  std::vector<std::string> calls_;
};

Decision Wants(int prefill, int decode) {
  Decision decision;
  decision.prefill.target = prefill;
  decision.decode.target = decode;
  return decision;
}

TEST(LocalConnectorTest, ResolvesRolesAndGroupsAndScalesOnlyWhatDiffers) {
  FakeSupervisor supervisor;
  ScaleTarget decode = *ParseScaleTarget("decode=decode:1:8");
  LocalScaleConnector only_decode({.url = supervisor.url(), .token = "secret"}, {decode});
  ASSERT_TRUE(only_decode.Resolve().ok());
  EXPECT_EQ(only_decode.targets()[0].composition.decode, 1);
  EXPECT_EQ(only_decode.targets()[0].composition.prefill, 0);
  absl::StatusOr<ReplicaCounts> counts = only_decode.Current();
  ASSERT_TRUE(counts.ok()) << counts.status();
  EXPECT_EQ(counts->decode, 1);

  ASSERT_TRUE(only_decode.Apply(Wants(5, 3)).ok());
  ASSERT_TRUE(only_decode.Apply(Wants(5, 3)).ok());  // idempotent: no second call
  EXPECT_THAT(supervisor.calls(), ElementsAre("decode=3"));
  EXPECT_EQ(only_decode.Current()->decode, 3);

  ScaleTarget group = *ParseScaleTarget("pd=pd:1:4");
  LocalScaleConnector grouped({.url = supervisor.url(), .token = "secret"}, {group});
  ASSERT_TRUE(grouped.Resolve().ok());
  EXPECT_EQ(grouped.targets()[0].composition.prefill, 2);
  EXPECT_EQ(grouped.targets()[0].composition.decode, 1);
  EXPECT_EQ(grouped.Current()->prefill, 4);
  EXPECT_EQ(grouped.Current()->decode, 2);
  ASSERT_TRUE(grouped.Apply(Wants(5, 1)).ok());  // 5 prefill at 2 per replica: 3 replicas
  EXPECT_THAT(supervisor.calls(), ElementsAre("decode=3", "pd=3"));
}

TEST(LocalConnectorTest, RefusalsSayWhatWentWrong) {
  FakeSupervisor supervisor;
  LocalScaleConnector unknown({.url = supervisor.url(), .token = "secret"},
                              {*ParseScaleTarget("gen=gen:1:2")});
  EXPECT_EQ(unknown.Resolve().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.Resolve().message(), HasSubstr("no role or scaling group of that name"));
  LocalScaleConnector router(
      {.url = supervisor.url(), .token = "secret"},
      {*ParseScaleTarget("router=router:1:2"), *ParseScaleTarget("decode=decode:1:2")});
  ASSERT_TRUE(router.Resolve().ok());
  ASSERT_EQ(router.targets().size(), 1u);  // the router is not the planner's to size
  EXPECT_EQ(router.targets()[0].name, "decode");
  EXPECT_THAT(router.ignored(), ElementsAre(HasSubstr("'router' holds no prefill or decode role")));
  LocalScaleConnector wrong_token({.url = supervisor.url(), .token = "guess"},
                                  {*ParseScaleTarget("decode=decode:1:2")});
  EXPECT_EQ(wrong_token.Apply(Wants(1, 2)).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(wrong_token.Resolve().message(), HasSubstr("answered 401: missing or wrong bearer"));

  LocalScaleConnector vanishing({.url = supervisor.url(), .token = "secret"},
                                {*ParseScaleTarget("decode=decode:1:8")});
  ASSERT_TRUE(vanishing.Resolve().ok());
  supervisor.Remove("decode");
  EXPECT_FALSE(vanishing.Apply(Wants(1, 2)).ok());
  EXPECT_FALSE(vanishing.resolved());  // resolved again next time

  LocalScaleConnector nobody(
      {.url = "http://127.0.0.1:1", .token = "secret", .timeout = absl::Seconds(1)},
      {*ParseScaleTarget("decode=decode:1:2")});
  EXPECT_EQ(nobody.Apply(Wants(1, 2)).code(), absl::StatusCode::kUnavailable);
}

TEST(LocalConnectorTest, FindsTheOrchestratorFromFlagsEnvironmentOrStateFile) {
  FakeEnv env;
  absl::StatusOr<LocalOrchestrator> none = LocalOrchestratorFromEnvironment(env, "", "");
  EXPECT_THAT(none.status().message(), HasSubstr("--orchestrator URL"));
  absl::StatusOr<LocalOrchestrator> no_token =
      LocalOrchestratorFromEnvironment(env, "http://127.0.0.1:5", "");
  EXPECT_THAT(no_token.status().message(), HasSubstr("TANDEM_ORCHESTRATOR_TOKEN"));
  env.SetVar("TANDEM_ORCHESTRATOR_TOKEN", "t0k");
  absl::StatusOr<LocalOrchestrator> flags =
      LocalOrchestratorFromEnvironment(env, "http://127.0.0.1:5/", "");
  ASSERT_TRUE(flags.ok());
  EXPECT_EQ(flags->url, "http://127.0.0.1:5");
  EXPECT_EQ(flags->token, "t0k");

  FakeEnv file_env;
  file_env.SetFile("run/x/state.json",
                   R"({"name": "x", "control_url": "http://127.0.0.1:7", "token": "abc"})");
  absl::StatusOr<LocalOrchestrator> state =
      LocalOrchestratorFromEnvironment(file_env, "", "run/x/state.json");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->url, "http://127.0.0.1:7");
  EXPECT_EQ(state->token, "abc");
  file_env.SetFile("bad.json", R"({"control_url": 7})");
  EXPECT_THAT(LocalOrchestratorFromEnvironment(file_env, "", "bad.json").status().message(),
              HasSubstr("is not a JSON object with string 'control_url' and 'token'"));
  EXPECT_FALSE(LocalOrchestratorFromEnvironment(file_env, "", "missing.json").ok());
}

}  // namespace
}  // namespace tandem::planner
