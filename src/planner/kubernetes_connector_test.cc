// The Kubernetes connector against a local HTTPS server that implements exactly the requests it
// makes (GET and merge-PATCH of a scale subresource), with the request and response shapes of the
// Kubernetes API (autoscaling/v1 Scale, metav1 Status errors). No API server runs here; this
// server checks what a real one would: TLS, the bearer token, the path, the patch content type.
#include "planner/kubernetes_connector.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// A self-signed certificate for 127.0.0.1, written as PEM files.
struct TestCertificate {
  std::string cert_file;
  std::string key_file;

  static TestCertificate Make(const std::string& prefix) {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>("kubernetes"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* san =
        X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    X509_add_ext(cert, san, -1);
    X509_EXTENSION_free(san);
    X509_EXTENSION* basic = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "CA:TRUE");
    X509_add_ext(cert, basic, -1);
    X509_EXTENSION_free(basic);
    X509_sign(cert, key, EVP_sha256());
    TestCertificate out{prefix + ".crt", prefix + ".key"};
    FILE* f = std::fopen(out.cert_file.c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    f = std::fopen(out.key_file.c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    X509_free(cert);
    EVP_PKEY_free(key);
    return out;
  }
};

struct Recorded {
  std::string method;
  std::string path;
  std::string content_type;
  std::string body;
};

class FakeApiServer {
 public:
  FakeApiServer(const TestCertificate& certificate, std::string token)
      : token_(std::move(token)), acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    tls_.use_certificate_chain_file(certificate.cert_file);
    tls_.use_private_key_file(certificate.key_file, asio::ssl::context::pem);
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeApiServer() {
    stopping_ = true;
    beast::error_code error;
    // Wake the blocking accept.
    asio::ip::tcp::socket poke(io_);
    poke.connect({asio::ip::make_address("127.0.0.1"), static_cast<uint16_t>(port_)}, error);
    thread_.join();
  }

  int port() const { return port_; }
  void SetReplicas(const std::string& path, int replicas) {
    std::lock_guard<std::mutex> lock(mu_);
    replicas_[path] = replicas;
  }
  int Replicas(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    return replicas_.at(path);
  }
  std::vector<Recorded> Requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  static std::string Status(int code, const std::string& reason, const std::string& message) {
    return nlohmann::json{{"kind", "Status"},   {"apiVersion", "v1"}, {"status", "Failure"},
                          {"message", message}, {"reason", reason},   {"code", code}}
        .dump();
  }

  void Serve() {
    while (!stopping_) {
      asio::ip::tcp::socket socket(io_);
      beast::error_code error;
      acceptor_.accept(socket, error);
      if (error || stopping_) continue;
      beast::ssl_stream<asio::ip::tcp::socket> stream(std::move(socket), tls_);
      stream.handshake(asio::ssl::stream_base::server, error);
      if (error) continue;  // a client that does not trust us
      beast::flat_buffer buffer;
      http::request<http::string_body> request;
      http::read(stream, buffer, request, error);
      if (error) continue;
      http::response<http::string_body> response{http::status::ok, 11};
      response.set(http::field::content_type, "application/json");
      std::string path(request.target());
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back({std::string(request.method_string()), path,
                             std::string(request[http::field::content_type]), request.body()});
        auto it = replicas_.find(path);
        if (request[http::field::authorization] != "Bearer " + token_) {
          response.result(http::status::unauthorized);
          response.body() = Status(401, "Unauthorized", "Unauthorized");
        } else if (it == replicas_.end()) {
          response.result(http::status::not_found);
          response.body() = Status(404, "NotFound", "statefulsets.apps \"x\" not found");
        } else if (request.method() == http::verb::get) {
          response.body() = ScaleJson(path, it->second);
        } else if (request.method() == http::verb::patch &&
                   request[http::field::content_type] == "application/merge-patch+json") {
          nlohmann::json patch = nlohmann::json::parse(request.body(), nullptr, false);
          it->second = patch["spec"]["replicas"].get<int>();
          response.body() = ScaleJson(path, it->second);
        } else {
          response.result(http::status::unsupported_media_type);
          response.body() = Status(415, "UnsupportedMediaType", "unsupported patch type");
        }
      }
      response.prepare_payload();
      http::write(stream, response, error);
      stream.shutdown(error);
    }
  }

  static std::string ScaleJson(const std::string& path, int replicas) {
    nlohmann::json scale = {{"kind", "Scale"},
                            {"apiVersion", "autoscaling/v1"},
                            {"metadata", {{"name", path}}},
                            {"status", {{"replicas", replicas}}}};
    if (replicas > 0)
      scale["spec"] = {{"replicas", replicas}};
    else
      scale["spec"] = nlohmann::json::object();
    return scale.dump();
  }

  std::string token_;
  asio::io_context io_;
  asio::ssl::context tls_{asio::ssl::context::tls_server};
  asio::ip::tcp::acceptor acceptor_;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, int> replicas_;
  std::vector<Recorded> requests_;
};

constexpr char kDecodePath[] = "/apis/apps/v1/namespaces/serving/statefulsets/demo-decode/scale";
constexpr char kPrefillPath[] =
    "/apis/grove.io/v1alpha1/namespaces/serving/podcliquescalinggroups/demo-pd/scale";

class KubernetesConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certificate_ = TestCertificate::Make(::testing::TempDir() + "/kube-test");
    server_ = std::make_unique<FakeApiServer>(certificate_, "sa-token");
    server_->SetReplicas(kDecodePath, 1);
    server_->SetReplicas(kPrefillPath, 0);
    options_.host = "127.0.0.1";
    options_.port = server_->port();
    options_.ca_file = certificate_.cert_file;
    options_.token = "sa-token";
    options_.kubernetes_namespace = "serving";
  }

  std::vector<RoleScaleTargets> Targets() {
    return {{"decode", {*ParseScaleObject("apps/statefulsets/demo-decode")}},
            {"prefill", {*ParseScaleObject("grove.io/podcliquescalinggroups/demo-pd*2")}}};
  }

  Decision MakeDecision(int prefill, int decode) {
    Decision decision;
    decision.prefill.target = prefill;
    decision.decode.target = decode;
    return decision;
  }

  TestCertificate certificate_;
  std::unique_ptr<FakeApiServer> server_;
  KubernetesOptions options_;
};

TEST_F(KubernetesConnectorTest, AppliesDecisionsThroughScaleSubresourcesIdempotently) {
  auto connector = KubernetesScaleConnector::Create(options_, Targets());
  ASSERT_TRUE(connector.ok()) << connector.status();
  ASSERT_TRUE((*connector)->Apply(MakeDecision(3, 2)).ok());
  EXPECT_EQ(server_->Replicas(kDecodePath), 2);
  EXPECT_EQ(server_->Replicas(kPrefillPath), 6);  // 3 instances x 2 pods per unit
  std::vector<Recorded> requests = server_->Requests();
  ASSERT_EQ(requests.size(), 4u);
  EXPECT_EQ(requests[0].method, "GET");
  EXPECT_EQ(requests[0].path, kDecodePath);
  EXPECT_EQ(requests[1].method, "PATCH");
  EXPECT_EQ(requests[1].content_type, "application/merge-patch+json");
  EXPECT_EQ(nlohmann::json::parse(requests[1].body), (nlohmann::json{{"spec", {{"replicas", 2}}}}));
  // The same decision again only reads.
  ASSERT_TRUE((*connector)->Apply(MakeDecision(3, 2)).ok());
  requests = server_->Requests();
  ASSERT_EQ(requests.size(), 6u);
  EXPECT_EQ(requests[4].method, "GET");
  EXPECT_EQ(requests[5].method, "GET");
}

TEST_F(KubernetesConnectorTest, WrongTokenMissingObjectAndUntrustedServerAreClearErrors) {
  KubernetesOptions bad_token = options_;
  bad_token.token = "stolen";
  auto connector = KubernetesScaleConnector::Create(bad_token, Targets());
  ASSERT_TRUE(connector.ok());
  EXPECT_EQ((*connector)->Apply(MakeDecision(1, 1)).code(), absl::StatusCode::kUnauthenticated);

  auto missing = KubernetesScaleConnector::Create(
      options_, {{"decode", {*ParseScaleObject("apps/statefulsets/nope")}}});
  ASSERT_TRUE(missing.ok());
  absl::Status status = (*missing)->Apply(MakeDecision(1, 1));
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(status.message().find("not found"), std::string::npos) << status;

  // A CA that did not sign the server's certificate: the TLS handshake fails.
  TestCertificate other = TestCertificate::Make(::testing::TempDir() + "/other-ca");
  KubernetesOptions untrusted = options_;
  untrusted.ca_file = other.cert_file;
  auto wary = KubernetesScaleConnector::Create(untrusted, Targets());
  ASSERT_TRUE(wary.ok());
  status = (*wary)->Apply(MakeDecision(1, 1));
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(status.message().find("TLS"), std::string::npos) << status;
  EXPECT_EQ(server_->Replicas(kDecodePath), 1);  // nothing changed
}

TEST(ScaleObjectTest, ParsesAndRefuses) {
  auto object = ParseScaleObject("apps/statefulsets/demo-decode*2");
  ASSERT_TRUE(object.ok());
  EXPECT_EQ(object->version, "v1");
  EXPECT_EQ(object->pods_per_unit, 2);
  EXPECT_EQ(object->Path("ns"), "/apis/apps/v1/namespaces/ns/statefulsets/demo-decode/scale");
  EXPECT_TRUE(ParseScaleObject("example.com/v2/widgets/w").ok());
  for (const char* bad :
       {"statefulsets/x", "example.com/widgets/w", "apps/statefulsets/X", "apps/statefulsets/x*0",
        "apps/statefulsets/a/b/c", "apps/statefulsets/x*y"}) {
    EXPECT_FALSE(ParseScaleObject(bad).ok()) << bad;
  }
}

TEST(InClusterOptionsTest, ReadsServiceAccountOrExplains) {
  FakeEnv env;
  EXPECT_EQ(InClusterOptions(env).status().code(), absl::StatusCode::kFailedPrecondition);
  env.SetVar("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  env.SetVar("KUBERNETES_SERVICE_PORT", "443");
  EXPECT_FALSE(InClusterOptions(env).ok());  // no token file
  std::string dir = "/var/run/secrets/kubernetes.io/serviceaccount";
  env.SetFile(dir + "/token", "abc\n");
  env.SetFile(dir + "/ca.crt", "pem");
  env.SetFile(dir + "/namespace", "serving");
  auto options = InClusterOptions(env);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->token, "abc");
  EXPECT_EQ(options->kubernetes_namespace, "serving");
  EXPECT_EQ(options->port, 443);
}

}  // namespace
}  // namespace tandem::planner
