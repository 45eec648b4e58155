#include "model/tokenizer.h"

#include <random>
#include <set>
#include <thread>

#include "gtest/gtest.h"
#include "model/bpe_trainer.h"
#include "model/unicode.h"
#include "model/vocab.h"

namespace tandem::model {
namespace {

std::vector<std::string> Split(PreTokenizer kind, std::string_view text) {
  std::vector<std::string_view> pieces;
  PreTokenize(kind, text, &pieces);
  return {pieces.begin(), pieces.end()};
}

using Pieces = std::vector<std::string>;

TEST(UnicodeTest, Classes) {
  EXPECT_EQ(CodePointClass('a'), kUnicodeLetter);
  EXPECT_EQ(CodePointClass('7'), kUnicodeNumber);
  EXPECT_EQ(CodePointClass(' '), kUnicodeWhitespace);
  EXPECT_EQ(CodePointClass('!'), 0);
  EXPECT_EQ(CodePointClass(0x4E2D), kUnicodeLetter);      // 中
  EXPECT_EQ(CodePointClass(0x00E9), kUnicodeLetter);      // é
  EXPECT_EQ(CodePointClass(0x0301), kUnicodeMark);        // combining acute
  EXPECT_EQ(CodePointClass(0x0663), kUnicodeNumber);      // Arabic-Indic three
  EXPECT_EQ(CodePointClass(0x3000), kUnicodeWhitespace);  // ideographic space
  EXPECT_EQ(CodePointClass(0x1F600), 0);                  // emoji: a symbol
  EXPECT_EQ(CodePointClass(0x110000), 0);
}

TEST(UnicodeTest, Utf8) {
  size_t len;
  EXPECT_EQ(DecodeUtf8("\xe4\xb8\xad", 0, &len), 0x4E2Du);
  EXPECT_EQ(len, 3u);
  EXPECT_TRUE(DecodeUtf8("\xe4\xb8", 0, &len) & kInvalidCodePoint);  // truncated
  EXPECT_EQ(len, 1u);
  EXPECT_TRUE(DecodeUtf8("\xc0\x80", 0, &len) & kInvalidCodePoint);      // overlong
  EXPECT_TRUE(DecodeUtf8("\xed\xa0\x80", 0, &len) & kInvalidCodePoint);  // surrogate
  std::string s;
  AppendUtf8(0x1F600, &s);
  EXPECT_EQ(s, "\xf0\x9f\x98\x80");
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xf0\x9f"), 2u);
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xf0\x9f\x98\x80"), 6u);
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\x80"), 3u);      // a stray continuation byte
  EXPECT_EQ(CompleteUtf8PrefixLength("ab\xed\xa0"), 4u);  // can never complete
  EXPECT_EQ(CompleteUtf8PrefixLength("\xe4"), 0u);
}

TEST(UnicodeTest, ByteToUnicodeIsGpt2Table) {
  EXPECT_EQ(ByteToUnicode(' '), 0x120u);   // Ġ
  EXPECT_EQ(ByteToUnicode('\n'), 0x10Au);  // Ċ
  EXPECT_EQ(ByteToUnicode('a'), static_cast<uint32_t>('a'));
  for (int b = 0; b < 256; ++b) EXPECT_EQ(UnicodeToByte(ByteToUnicode(b)), b);
}

TEST(PreTokenizerTest, Gpt2) {
  EXPECT_EQ(Split(PreTokenizer::kGpt2, "Hello world's  end!!\n"),
            (Pieces{"Hello", " world", "'s", " ", " end", "!!", "\n"}));
  EXPECT_EQ(Split(PreTokenizer::kGpt2, "x 12345 y"), (Pieces{"x", " 12345", " y"}));
  EXPECT_EQ(Split(PreTokenizer::kGpt2, "a   b"), (Pieces{"a", "  ", " b"}));
  EXPECT_EQ(Split(PreTokenizer::kGpt2, "I'LL go"), (Pieces{"I", "'", "LL", " go"}));
}

TEST(PreTokenizerTest, Llama3) {
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "Hello world's  end!!\n"),
            (Pieces{"Hello", " world", "'s", " ", " end", "!!\n"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "x 12345 y"), (Pieces{"x", " ", "123", "45", " y"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "I'LL go"), (Pieces{"I", "'LL", " go"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "a \n\n  b"), (Pieces{"a", " \n\n", " ", " b"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "(hello)\tworld"), (Pieces{"(hello", ")", "\tworld"}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "  "), (Pieces{"  "}));
  EXPECT_EQ(Split(PreTokenizer::kLlama3, "中文 text"), (Pieces{"中文", " text"}));
}

TEST(PreTokenizerTest, Qwen2SplitsDigitsOneByOne) {
  EXPECT_EQ(Split(PreTokenizer::kQwen2, "x 123"), (Pieces{"x", " ", "1", "2", "3"}));
}

TEST(PreTokenizerTest, InvalidUtf8KeepsEveryByte) {
  const std::string text = "a\xff\xfe b\xe4";
  std::string joined;
  for (const auto& p : Split(PreTokenizer::kLlama3, text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(BpeTrainerTest, LearnsFrequentPairsDeterministically) {
  const BpeTrainResult a = TrainByteLevelBpe("low lower lowest low low", PreTokenizer::kGpt2, 300);
  const BpeTrainResult b = TrainByteLevelBpe("low lower lowest low low", PreTokenizer::kGpt2, 300);
  ASSERT_FALSE(a.merges.empty());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.merges, b.merges);
  // " l"+"o" style pairs of " low" dominate: the first merge is among its bytes.
  EXPECT_EQ(a.tokens[256].size(), 2u);
  EXPECT_NE(std::string(" low").find(a.tokens[256]), std::string::npos);
}

class DemoVocabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto v = DemoVocab(4096);
    ASSERT_TRUE(v.ok()) << v.status();
    vocab_ = *v;
    auto t = Tokenizer::FromVocab(vocab_);
    ASSERT_TRUE(t.ok()) << t.status();
    tok_ = std::move(*t);
  }
  VocabSpec vocab_;
  std::unique_ptr<Tokenizer> tok_;
};

const char* const kSamples[] = {
    "",
    "Hello, world!",
    "The server reads the prompt before noon.",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\r\nlines\n\n\n",
    "numbers 1234567 and 3.14159",
    "accents: café, naïve, Ångström, façade",
    "中文字符和日本語のテキスト",
    "emoji 😀👍🏽 and flags 🇫🇷",
    "code: for (int i = 0; i < n; ++i) { x += a[i]; }",
    "<|im_start|>user\nhi<|im_end|>",
    "don't won't I'LL we've",
    "\xff invalid \xc0 bytes",
};

TEST_F(DemoVocabTest, ShapeAndSpecialTokens) {
  EXPECT_EQ(tok_->vocab_size(), 4096);
  EXPECT_EQ(tok_->TokenText(tok_->bos_id()), "<|begin_of_text|>");
  EXPECT_EQ(tok_->TokenText(tok_->eos_id()), "<|end_of_text|>");
  EXPECT_EQ(tok_->TokenText(tok_->eot_id()), "<|im_end|>");
  EXPECT_TRUE(tok_->IsEos(tok_->eos_id()));
  EXPECT_TRUE(tok_->IsEos(tok_->eot_id()));
  EXPECT_FALSE(tok_->IsEos(100));
  EXPECT_GT(vocab_.merges.size(), 3000u);
  std::set<std::string> unique(vocab_.tokens.begin(), vocab_.tokens.end());
  EXPECT_EQ(unique.size(), vocab_.tokens.size()) << "token texts must be unique";
  EXPECT_NE(vocab_.chat_template.find("<|im_start|>"), std::string::npos);
  auto again = DemoVocab(4096);
  EXPECT_EQ(again->tokens, vocab_.tokens);
  EXPECT_EQ(again->merges, vocab_.merges);
  EXPECT_FALSE(DemoVocab(100).ok());
  auto big = DemoVocab(32000);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->tokens.size(), 32000u);
}

TEST_F(DemoVocabTest, RoundTrip) {
  for (const char* s : kSamples) {
    for (bool parse_special : {false, true}) {
      const auto ids = tok_->Encode(s, /*add_special=*/false, parse_special);
      EXPECT_EQ(tok_->Decode(ids), s) << "text: " << s;
    }
  }
}

TEST_F(DemoVocabTest, PieceThatIsATokenEncodesToIt) {
  // The demo vocabulary uses the Llama-3 pre-tokenizer and so ignore_merges: a piece that is
  // itself a token is that token.
  int checked = 0;
  for (int32_t id = 256; id < tok_->vocab_size(); ++id) {
    if (tok_->IsControl(id)) continue;
    const std::string text(tok_->TokenBytes(id));
    std::vector<std::string_view> pieces;
    PreTokenize(PreTokenizer::kLlama3, text, &pieces);
    if (pieces.size() != 1) continue;
    EXPECT_EQ(tok_->Encode(text, false, false), std::vector<int32_t>{id}) << text;
    ++checked;
  }
  EXPECT_GT(checked, 3000);
}

TEST_F(DemoVocabTest, MergesCompressCommonWords) {
  const auto ids = tok_->Encode("The server reads the prompt", false, false);
  EXPECT_LE(ids.size(), 8u);
  const auto with_bos = tok_->Encode("The", /*add_special=*/true, false);
  ASSERT_FALSE(with_bos.empty());
  EXPECT_EQ(with_bos[0], tok_->bos_id());
}

TEST_F(DemoVocabTest, SpecialTokensOnlyWhenAsked) {
  const auto parsed = tok_->Encode("<|im_start|>user", false, /*parse_special=*/true);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(tok_->TokenText(parsed[0]), "<|im_start|>");
  const auto plain = tok_->Encode("<|im_start|>user", false, /*parse_special=*/false);
  for (int32_t id : plain) EXPECT_FALSE(tok_->IsControl(id));
  EXPECT_EQ(tok_->Decode(parsed, /*skip_special=*/true), "user");
}

TEST_F(DemoVocabTest, TokenizerJsonRoundTrip) {
  const std::string json = VocabToTokenizerJson(vocab_);
  const std::string config = VocabToTokenizerConfigJson(vocab_);
  auto from_json = Tokenizer::FromHuggingFaceJson(json, config);
  ASSERT_TRUE(from_json.ok()) << from_json.status();
  const Tokenizer& t = **from_json;
  EXPECT_EQ(t.vocab_size(), tok_->vocab_size());
  EXPECT_EQ(t.bos_id(), tok_->bos_id());
  EXPECT_EQ(t.eos_id(), tok_->eos_id());
  EXPECT_EQ(t.eot_id(), tok_->eot_id());
  EXPECT_EQ(t.add_bos(), tok_->add_bos());
  EXPECT_EQ(t.chat_template(), tok_->chat_template());
  for (const char* s : kSamples) {
    EXPECT_EQ(t.Encode(s, true, true), tok_->Encode(s, true, true)) << s;
  }
}

TEST_F(DemoVocabTest, StreamDecoderMatchesDecodeAndNeverSplitsCharacters) {
  const uint32_t seed = 1234;
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> any_id(0, tok_->vocab_size() + 5);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> ids;
    // Half the rounds encode real text (split characters at token boundaries), half are random.
    if (round % 2 == 0) {
      ids = tok_->Encode(kSamples[round / 2 % std::size(kSamples)], true, true);
    } else {
      for (int i = 0; i < 30; ++i) ids.push_back(any_id(rng));
    }
    for (bool skip : {false, true}) {
      StreamDecoder stream(*tok_, skip);
      std::string joined;
      std::vector<size_t> boundaries;
      for (int32_t id : ids) {
        joined += stream.Feed(id);
        boundaries.push_back(joined.size());
      }
      joined += stream.Flush();
      EXPECT_EQ(joined, tok_->Decode(ids, skip)) << "seed " << seed << " round " << round;
      // No chunk ends inside a character that is valid UTF-8 in the full text.
      std::vector<uint8_t> inside(joined.size() + 1, 0);
      for (size_t pos = 0, len; pos < joined.size(); pos += len) {
        DecodeUtf8(joined, pos, &len);
        for (size_t k = 1; k < len; ++k) inside[pos + k] = 1;
      }
      for (size_t b : boundaries) {
        EXPECT_FALSE(inside[b]) << "seed " << seed << " round " << round << " at " << b;
      }
    }
  }
  // A multi-byte character split across byte tokens comes out whole.
  const std::string emoji = "\xf0\x9f\x98\x80";
  StreamDecoder stream(*tok_);
  std::string out;
  for (char c : emoji) {
    out = stream.Feed(static_cast<uint8_t>(c));  // ids 0..255 are the single bytes
    if (out.size()) break;
  }
  EXPECT_EQ(out, emoji);
}

TEST_F(DemoVocabTest, ConcurrentEncodeAgrees) {
  std::string text;
  for (const char* s : kSamples) text += s;
  const auto expected = tok_->Encode(text, true, true);
  std::vector<std::thread> threads;
  std::vector<int> ok(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      int good = 0;
      for (int i = 0; i < 50; ++i) good += tok_->Encode(text, true, true) == expected;
      ok[t] = good;
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(ok[t], 50);
}

TEST(ByteLevelBpeTest, LongPiecesUseTheSameMergeOrder) {
  // A run of 200 spaces takes the heap path; the result must equal merging pair by pair.
  auto v = DemoVocab(4096);
  ASSERT_TRUE(v.ok());
  auto tok = Tokenizer::FromVocab(*v);
  ASSERT_TRUE(tok.ok());
  for (int n : {3, 47, 48, 49, 50, 200}) {
    const std::string spaces(n, ' ');
    const std::string text = "a" + spaces + "b" + std::string(n, '!');
    EXPECT_EQ((*tok)->Decode((*tok)->Encode(text, false, false)), text);
  }
}

// A tiny SentencePiece vocabulary in GGUF form.
VocabSpec TinySentencePiece() {
  VocabSpec v;
  v.kind = VocabSpec::Kind::kSentencePiece;
  v.tokens = {"<unk>", "<s>", "</s>"};
  v.token_types = {2, 3, 3};
  v.scores = {0, 0, 0};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    snprintf(buf, sizeof(buf), "<0x%02X>", b);
    v.tokens.push_back(buf);
    v.token_types.push_back(6);
    v.scores.push_back(0);
  }
  const std::vector<std::pair<std::string, float>> pieces = {{"\xe2\x96\x81", -1},
                                                             {"h", -2},
                                                             {"e", -3},
                                                             {"l", -4},
                                                             {"o", -5},
                                                             {"w", -6},
                                                             {"r", -7},
                                                             {"d", -8},
                                                             {"ll", -9},
                                                             {"he", -10},
                                                             {"llo", -11},
                                                             {"hello", -12},
                                                             {"\xe2\x96\x81hello", -13},
                                                             {"\xe2\x96\x81w", -14},
                                                             {"or", -15}};
  for (const auto& [text, score] : pieces) {
    v.tokens.push_back(text);
    v.token_types.push_back(1);
    v.scores.push_back(score);
  }
  v.bos_id = 1;
  v.eos_id = 2;
  v.unk_id = 0;
  v.add_bos = true;
  return v;
}

TEST(SentencePieceTest, MergesByScoreAndFallsBackToBytes) {
  auto tok = Tokenizer::FromVocab(TinySentencePiece());
  ASSERT_TRUE(tok.ok()) << tok.status();
  const Tokenizer& t = **tok;
  auto texts = [&](const std::vector<int32_t>& ids) {
    std::vector<std::string> out;
    for (int32_t id : ids) out.emplace_back(t.TokenText(id));
    return out;
  };
  EXPECT_EQ(
      texts(t.Encode("hello world", true, false)),
      (std::vector<std::string>{"<s>", "\xe2\x96\x81hello", "\xe2\x96\x81w", "or", "l", "d"}));
  // 'é' is not in the vocabulary: its two UTF-8 bytes.
  EXPECT_EQ(texts(t.Encode("hé", false, false)),
            (std::vector<std::string>{"\xe2\x96\x81", "h", "<0xC3>", "<0xA9>"}));
  for (const char* s : {"hello world", " hello", "héllo wörld  ", "", "a\nb"}) {
    EXPECT_EQ(t.Decode(t.Encode(s, true, false), /*skip_special=*/true), s) << s;
  }
  // After a special token, text gets the dummy space again, and decoding drops it again.
  const auto ids = t.Encode("<s>hello", false, /*parse_special=*/true);
  EXPECT_EQ(texts(ids), (std::vector<std::string>{"<s>", "\xe2\x96\x81hello"}));
  EXPECT_EQ(t.Decode(ids), "<s>hello");
}

TEST(SentencePieceTest, TokenizerJsonFormAgrees) {
  const VocabSpec v = TinySentencePiece();
  auto direct = Tokenizer::FromVocab(v);
  auto via_json =
      Tokenizer::FromHuggingFaceJson(VocabToTokenizerJson(v), VocabToTokenizerConfigJson(v));
  ASSERT_TRUE(direct.ok());
  ASSERT_TRUE(via_json.ok()) << via_json.status();
  EXPECT_EQ((*via_json)->kind(), VocabSpec::Kind::kSentencePiece);
  for (const char* s : {"hello world", "héllo wörld", "hello hello helloworld", "  x"}) {
    EXPECT_EQ((*via_json)->Encode(s, true, false), (*direct)->Encode(s, true, false)) << s;
  }
}

TEST(TokenizerErrorsTest, BadVocabSpecs) {
  VocabSpec empty;
  EXPECT_FALSE(Tokenizer::FromVocab(empty).ok());
  VocabSpec v = TinySentencePiece();
  v.bos_id = 100000;
  auto s = Tokenizer::FromVocab(v).status();
  EXPECT_NE(s.message().find("BOS id 100000"), std::string::npos) << s;
  v = TinySentencePiece();
  v.scores.pop_back();
  EXPECT_NE(Tokenizer::FromVocab(v).status().message().find("scores"), std::string::npos);
  auto demo = *DemoVocab(300);
  demo.merges.push_back("Ġzzz qqq");
  s = Tokenizer::FromVocab(demo).status();
  EXPECT_NE(s.message().find("is not in the vocabulary"), std::string::npos) << s;
  demo = *DemoVocab(300);
  demo.pre_tokenizer = "falcon";
  s = Tokenizer::FromVocab(demo).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("'falcon'"), std::string::npos) << s;
}

TEST(TokenizerErrorsTest, MalformedTokenizerJson) {
  struct Case {
    const char* json;
    const char* expect;
  };
  const Case cases[] = {
      {"", "not valid JSON"},
      {"[1,2]", "expected a JSON object"},
      {"{}", "model: expected an object"},
      {R"({"model":{"type":"WordPiece","vocab":{}}})", "model.type 'WordPiece'"},
      {R"({"model":{"type":"BPE","vocab":[]}})", "model.vocab"},
      {R"({"model":{"type":"BPE","vocab":{"a":"x"}}})", "model.vocab['a']: expected an integer"},
      {R"({"model":{"type":"BPE","vocab":{"a":99999999}}})", "has id 99999999"},
      {R"({"model":{"type":"BPE","vocab":{"a":0,"b":0}}})", "is given to both"},
      {R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[3]},"decoder":{"type":"ByteLevel"}})",
       "model.merges[0]"},
      {R"({"model":{"type":"BPE","vocab":{"a":0}}})", "neither byte-level BPE"},
      {R"({"model":{"type":"BPE","vocab":{"a":0}},"pre_tokenizer":{"type":"Sequence","pretokenizers":[{"type":"Split","pattern":{"Regex":"\\w+"}},{"type":"ByteLevel","use_regex":false}]}})",
       "Split pattern '\\w+'"},
      {R"({"model":{"type":"BPE","vocab":{"a":0},"merges":["a a"]},"decoder":{"type":"ByteLevel"}})",
       "merge 0 'a a': token 'aa' is not in the vocabulary"},
      {R"({"added_tokens":[{"id":"x"}],"model":{"type":"BPE","vocab":{"a":0}}})",
       "added_tokens[0]"},
  };
  for (const Case& c : cases) {
    auto t = Tokenizer::FromHuggingFaceJson(c.json, "", "my/tokenizer.json");
    ASSERT_FALSE(t.ok()) << c.json;
    EXPECT_NE(t.status().message().find(c.expect), std::string::npos)
        << "json: " << c.json << "\nstatus: " << t.status();
    EXPECT_NE(t.status().message().find("my/tokenizer.json"), std::string::npos) << t.status();
  }
  EXPECT_FALSE(Tokenizer::FromHuggingFaceJson(VocabToTokenizerJson(*DemoVocab(300)), "{oops").ok());
}

}  // namespace
}  // namespace tandem::model
