// Token ids of Tandem's tokenizers against independent JavaScript tokenizers on real
// vocabularies (Llama-3 byte-level BPE, Llama-2 SentencePiece) for over a thousand generated
// strings. The vocabularies and reference ids come from npm packages at test time (see
// make_conformance_data.mjs); nothing of them is committed.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string ReadAll(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    const char escaped = c == '\n' ? 'n' : c == '\r' ? 'r' : c == '\t' ? 't' : 0;
    if (escaped) out.push_back('\\');
    out.push_back(escaped ? escaped : c);
  }
  return out;
}

std::string Ids(const std::vector<int32_t>& ids) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < ids.size(); ++i) out << (i ? "," : "") << ids[i];
  out << ']';
  return out.str();
}

class ConformanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* src = std::getenv("TANDEM_SOURCE_DIR");
    source_ = src ? src : TANDEM_SOURCE_DIR_DEFAULT;
    const fs::path modules = fs::path(source_) / "tests" / "node_modules";
    for (const char* pkg : {"llama3-tokenizer-js", "llama-tokenizer-js"}) {
      if (!fs::exists(modules / pkg)) {
        setup_error_ = std::string("npm package '") + pkg + "' is missing from " +
                       modules.string() + ": run scripts/install-deps.sh";
        return;
      }
    }
    char tmpl[] = "/tmp/tandem-tokconf-XXXXXX";
    if (!mkdtemp(tmpl)) {
      setup_error_ = "cannot create a temporary directory";
      return;
    }
    dir_ = tmpl;
    const std::string cmd = "node '" + source_ + "/tests/tokenizer/make_conformance_data.mjs' '" +
                            dir_.string() + "' 1200 20240601";
    const int rc = std::system(cmd.c_str());
    if (rc != 0) {
      setup_error_ = "'" + cmd + "' failed (exit status " + std::to_string(rc) +
                     "); is node installed? run scripts/install-deps.sh";
      return;
    }
    cases_ = json::parse(ReadAll(dir_ / "cases.json"));
  }
  static void TearDownTestSuite() {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  void SetUp() override { ASSERT_TRUE(setup_error_.empty()) << setup_error_; }

  // Compares every string; prints the first mismatches with the string and both id lists.
  void Compare(const Tokenizer& tok, const char* reference, bool parse_special) {
    const auto& strings = cases_["strings"];
    const auto& expected = cases_[reference];
    ASSERT_GE(strings.size(), 1000u);
    int mismatches = 0, round_trip_failures = 0;
    for (size_t i = 0; i < strings.size(); ++i) {
      const std::string s = strings[i].get<std::string>();
      const auto want = expected[i].get<std::vector<int32_t>>();
      const auto got = tok.Encode(s, /*add_special=*/false, parse_special);
      if (got != want && ++mismatches <= 10) {
        ADD_FAILURE() << reference << " mismatch on string " << i << " \"" << Escape(s)
                      << "\" (seed " << cases_["seed"] << ")\n  expected " << Ids(want)
                      << "\n  tandem   " << Ids(got);
      }
      if (tok.Decode(got) != s && ++round_trip_failures <= 10) {
        ADD_FAILURE() << reference << " decode(encode(s)) != s for string " << i << " \""
                      << Escape(s) << "\": \"" << Escape(tok.Decode(got)) << "\"";
      }
    }
    EXPECT_EQ(mismatches, 0) << "of " << strings.size() << " strings";
    EXPECT_EQ(round_trip_failures, 0);
    std::cout << reference << ": " << strings.size() - mismatches << "/" << strings.size()
              << " strings agree\n";
  }

  static std::string source_;
  static std::string setup_error_;
  static fs::path dir_;
  static json cases_;
};
std::string ConformanceTest::source_;
std::string ConformanceTest::setup_error_;
fs::path ConformanceTest::dir_;
json ConformanceTest::cases_;

TEST_F(ConformanceTest, Llama3TokenizerJson) {
  auto tok = Tokenizer::FromHuggingFaceJson(ReadAll(dir_ / "llama3" / "tokenizer.json"),
                                            ReadAll(dir_ / "llama3" / "tokenizer_config.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 128256);
  EXPECT_EQ((*tok)->bos_id(), 128000);
  EXPECT_EQ((*tok)->eos_id(), 128001);
  EXPECT_TRUE((*tok)->IsEos(128009));  // <|eot_id|>
  Compare(**tok, "llama3", /*parse_special=*/true);
}

TEST_F(ConformanceTest, Llama2GgufVocab) {
  const json j = json::parse(ReadAll(dir_ / "llama2" / "vocab.json"));
  VocabSpec v;
  v.kind = VocabSpec::Kind::kSentencePiece;
  v.tokens = j["tokens"].get<std::vector<std::string>>();
  v.scores = j["scores"].get<std::vector<float>>();
  v.token_types = j["token_types"].get<std::vector<int32_t>>();
  v.bos_id = j["bos_id"];
  v.eos_id = j["eos_id"];
  v.unk_id = j["unk_id"];
  v.add_bos = j["add_bos"];
  auto tok = Tokenizer::FromVocab(v);
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->vocab_size(), 32000);
  Compare(**tok, "llama2", /*parse_special=*/false);
}

TEST_F(ConformanceTest, Llama2TokenizerJson) {
  auto tok = Tokenizer::FromHuggingFaceJson(ReadAll(dir_ / "llama2" / "tokenizer.json"),
                                            ReadAll(dir_ / "llama2" / "tokenizer_config.json"));
  ASSERT_TRUE(tok.ok()) << tok.status();
  EXPECT_EQ((*tok)->kind(), VocabSpec::Kind::kSentencePiece);
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  Compare(**tok, "llama2", /*parse_special=*/false);
}

}  // namespace
}  // namespace tandem::model
