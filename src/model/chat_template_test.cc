#include "model/chat_template.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

namespace tandem::model {
namespace {

std::string ReadTemplate(const std::string& name) {
  const char* src = std::getenv("TANDEM_SOURCE_DIR");
  const std::string path = std::string(src ? src : TANDEM_SOURCE_DIR_DEFAULT) +
                           "/tests/tokenizer/chat_templates/" + name + ".jinja";
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing test data " << path;
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::vector<ChatMessage> kWithSystem = {{"system", "You are a helpful assistant"},
                                              {"user", "Hello"},
                                              {"assistant", "Hi there"},
                                              {"user", "Who are you"},
                                              {"assistant", "   I am an assistant   "},
                                              {"user", "Another question"}};
const std::vector<ChatMessage> kNoSystem(kWithSystem.begin() + 1, kWithSystem.end());

struct Case {
  const char* file;
  bool system;
  const char* bos;
  const char* eos;
  const char* expected;
};

// Expected prompts, written out from each family's documented prompt format.
const Case kCases[] = {
    {"chatml", true, "<s>", "</s>",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>"
     "\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", true, "", "<|im_end|>",
     "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>"
     "\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    {"qwen2", false, "", "<|im_end|>",
     "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHello<|im_end|>"
     "\n<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
     "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n<|im_start|>user\nAnother "
     "question<|im_end|>\n<|im_start|>assistant\n"},
    {"mistral", false, "<s>", "</s>",
     "<s>[INST] Hello [/INST]Hi there</s> [INST] Who are you [/INST]   I am an assistant   </s> "
     "[INST] Another question [/INST]"},
    {"mixtral", false, "<s>", "</s>",
     "<s>[INST] Hello [/INST]Hi there</s>[INST] Who are you [/INST]   I am an assistant   "
     "</s>[INST] Another question [/INST]"},
    {"mistral-system", true, "<s>", "</s>",
     "<s> [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s> [INST] Who are you "
     "[/INST]    I am an assistant   </s> [INST] Another question [/INST]"},
    {"llama2", true, "<s>", "</s>",
     "<s>[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there "
     "</s><s>[INST] Who are you [/INST] I am an assistant </s><s>[INST] Another question "
     "[/INST]"},
    {"gemma", false, "<bos>", "<eos>",
     "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi "
     "there<end_of_turn>\n<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\nI "
     "am an assistant<end_of_turn>\n<start_of_turn>user\nAnother "
     "question<end_of_turn>\n<start_of_turn>model\n"},
    {"phi3", true, "<s>", "<|endoftext|>",
     "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\nHi "
     "there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n   I am an assistant   "
     "<|end|>\n<|user|>\nAnother question<|end|>\n<|assistant|>\n"},
    {"llama3", true, "<|begin_of_text|>", "<|end_of_text|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_"
     "header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am "
     "an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
    {"llama3.1", true, "<|begin_of_text|>", "<|eot_id|>",
     "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
     "December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful "
     "assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_"
     "header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>user<|end_"
     "header_id|>\n\nWho are you<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nI am "
     "an assistant<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAnother "
     "question<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
};

std::string Escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '\n' ? std::string("\\n") : std::string(1, c);
  return out;
}

TEST(ChatTemplateTest, RealTemplatesRenderByteForByte) {
  for (const Case& c : kCases) {
    auto t = ChatTemplate::Parse(ReadTemplate(c.file));
    ASSERT_TRUE(t.ok()) << c.file << ": " << t.status();
    auto out = t->Render(c.system ? kWithSystem : kNoSystem, true, c.bos, c.eos);
    ASSERT_TRUE(out.ok()) << c.file << ": " << out.status();
    EXPECT_EQ(*out, c.expected) << c.file << "\n got:      " << Escape(*out)
                                << "\n expected: " << Escape(c.expected);
  }
}

TEST(ChatTemplateTest, GenerationPromptSwitch) {
  auto phi3 = ChatTemplate::Parse(ReadTemplate("phi3"));
  ASSERT_TRUE(phi3.ok());
  EXPECT_EQ(*phi3->Render({{"user", "Hi"}}, false, "<s>", "<|endoftext|>"),
            "<|user|>\nHi<|end|>\n<|endoftext|>");
  auto llama3 = ChatTemplate::Parse(ReadTemplate("llama3"));
  ASSERT_TRUE(llama3.ok());
  EXPECT_EQ(*llama3->Render({{"user", " Hi \n"}}, false, "<|begin_of_text|>", ""),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplateTest, TemplatesRaiseTheirOwnErrors) {
  auto gemma = ChatTemplate::Parse(ReadTemplate("gemma"));
  ASSERT_TRUE(gemma.ok());
  auto r = gemma->Render(kWithSystem, true, "<bos>", "<eos>");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("System role not supported"), std::string::npos)
      << r.status();
  auto mistral = ChatTemplate::Parse(ReadTemplate("mistral"));
  r = mistral->Render({{"user", "a"}, {"user", "b"}}, true, "<s>", "</s>");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("must alternate"), std::string::npos) << r.status();
}

TEST(ChatTemplateTest, Llama31WithToolCalls) {
  auto t = ChatTemplate::Parse(ReadTemplate("llama3.1"));
  ASSERT_TRUE(t.ok()) << t.status();
  nlohmann::json context = {
      {"bos_token", "<|begin_of_text|>"},
      {"add_generation_prompt", false},
      {"date_string", "01 Jan 2025"},
      {"messages",
       {{{"role", "user"}, {"content", "Weather?"}},
        {{"role", "assistant"},
         {"tool_calls",
          {{{"function", {{"name", "get_weather"}, {"arguments", {{"city", "Paris"}}}}}}}}},
        {{"role", "tool"}, {"content", {{"temp", 21}}}}}}};
  auto out = t->RenderWithContext(context);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge "
            "Date: December 2023\nToday Date: 01 Jan "
            "2025\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|><|"
            "start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", "
            "\"parameters\": {\"city\": \"Paris\"}}<|eot_id|><|start_header_id|>ipython<|end_"
            "header_id|>\n\n{\"temp\": 21}<|eot_id|>");
  // With tools: each tool is written with tojson(indent=4), in the first user message.
  context["tools"] = {{{"name", "get_weather"}, {"parameters", {{"city", "string"}}}}};
  context["messages"] = {{{"role", "user"}, {"content", "Weather?"}}};
  out = t->RenderWithContext(context);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("{\n    \"name\": \"get_weather\",\n    \"parameters\": {\n        "
                      "\"city\": \"string\"\n    }\n}\n\nWeather?<|eot_id|>"),
            std::string::npos)
      << Escape(*out);
}

std::string RenderSource(const std::string& source,
                         nlohmann::json context = nlohmann::json::object()) {
  auto t = ChatTemplate::Parse(source);
  if (!t.ok()) return "PARSE ERROR: " + std::string(t.status().message());
  auto out = t->RenderWithContext(context);
  if (!out.ok()) return "RENDER ERROR: " + std::string(out.status().message());
  return *out;
}

TEST(ChatTemplateTest, Expressions) {
  EXPECT_EQ(RenderSource("{{ 1 + 2 * 3 }}|{{ 7 // 2 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 1 / 4 }}"),
            "7|3|2|1024|0.25");
  EXPECT_EQ(RenderSource("{{ 'a' ~ 1 ~ none }}|{{ 'ab' * 2 }}|{{ [1, 2] + [3] }}"),
            "a1None|abab|[1, 2, 3]");
  EXPECT_EQ(RenderSource("{{ 'x' if 1 > 2 else 'y' }}|{{ not true or false }}|{{ 3 in [1, 3] }}"
                         "|{{ 'b' not in 'abc' }}"),
            "y|False|True|False");
  EXPECT_EQ(RenderSource("{{ 'hello'[1:3] }}|{{ [1,2,3,4][::-1] }}|{{ [1,2,3][-1] }}"),
            "el|[4, 3, 2, 1]|3");
  EXPECT_EQ(
      RenderSource("{{ '  Hi  ' | trim | upper }}|{{ [3,1,2] | sort | join(',') }}|"
                   "{{ x | default('d') }}|{{ 'abc' | length }}|{{ {'a': [1, 'b']} | tojson }}"),
      "HI|1,2,3|d|3|{\"a\": [1, \"b\"]}");
  EXPECT_EQ(RenderSource("{{ 'a,b'.split(',') }}|{{ ' x '.strip() }}|{{ 'Hi'.startswith('H') }}|"
                         "{{ {'k': 1}.get('k') }}|{{ {'k': 1}.get('z', 5) }}"),
            "['a', 'b']|x|True|1|5");
  EXPECT_EQ(RenderSource("{{ x is defined }}|{{ none is none }}|{{ 4 is even }}|{{ 'a' is string }}"
                         "|{{ [1] is iterable }}|{{ 3 is not divisibleby 2 }}"),
            "False|True|True|True|True|True");
  EXPECT_EQ(RenderSource("{{ \"tab\\tnl\\n\\u00e9\" }}"), "tab\tnl\n\xc3\xa9");
}

TEST(ChatTemplateTest, Statements) {
  EXPECT_EQ(RenderSource("{% for x in [1,2,3] %}{{ loop.index }}{{ x }}{% if not loop.last %},"
                         "{% endif %}{% endfor %}"),
            "11,22,33");
  EXPECT_EQ(RenderSource("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(RenderSource("{% for x in range(10) if x is odd %}{{ x }}{% endfor %}"), "13579");
  EXPECT_EQ(RenderSource("{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}"
                         "{% if x == 1 %}{% continue %}{% endif %}{{ x }}{% endfor %}"),
            "02");
  EXPECT_EQ(RenderSource("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}={{ v }};{% endfor %}"),
            "a=1;b=2;");
  // set inside a loop does not leak out; a namespace carries values across iterations.
  EXPECT_EQ(
      RenderSource("{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1,2,3] %}"
                   "{% set n = n + x %}{% set ns.n = ns.n + x %}{% endfor %}{{ n }} {{ ns.n }}"),
      "0 6");
  EXPECT_EQ(RenderSource("{% if a %}A{% elif b %}B{% else %}C{% endif %}", {{"b", true}}), "B");
  EXPECT_EQ(RenderSource("{# comment #}x{{ y }}", {{"y", 2.5}}), "x2.5");
}

TEST(ChatTemplateTest, WhitespaceControl) {
  // trim_blocks and lstrip_blocks as Hugging Face renders, plus explicit - markers.
  EXPECT_EQ(RenderSource("{% if true %}\n  yes\n{% endif %}\n"), "  yes\n");
  EXPECT_EQ(RenderSource("a\n    {% if true %}b{% endif %}"), "a\nb");
  EXPECT_EQ(RenderSource("a  {%- if true -%}  b  {%- endif %}"), "ab");
  EXPECT_EQ(RenderSource("a {{- ' b ' -}} c"), "a b c");
  EXPECT_EQ(RenderSource("x {% if true %}y{% endif %}"), "x y");
}

TEST(ChatTemplateTest, UnsupportedConstructsAreRefusedWithPosition) {
  struct Bad {
    const char* source;
    const char* expect;
  };
  const Bad cases[] = {
      {"{% macro f() %}{% endmacro %}", "line 1, column 4: unsupported tag 'macro'"},
      {"hello\n{{ x | frobnicate }}", "line 2, column 8: unsupported filter 'frobnicate'"},
      {"{{ x is prime }}", "unsupported test 'prime'"},
      {"{{ open('/etc/passwd') }}", "unsupported function 'open'"},
      {"{% if x %}", "expected {% elif %} before the end"},
      {"{{ 'abc }}", "string literal is never closed"},
      {"{{ x ", "tag is never closed"},
      {"{% for %}", "expected a loop variable name"},
      {"{{ (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
       "((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("
       "(((((((((((((((((((((((((((((((((((1 }}",
       "nests too deeply"},
  };
  for (const Bad& b : cases) {
    auto t = ChatTemplate::Parse(b.source);
    ASSERT_FALSE(t.ok()) << b.source;
    EXPECT_NE(t.status().message().find(b.expect), std::string::npos) << b.source << "\n"
                                                                      << t.status();
  }
}

TEST(ChatTemplateTest, NamespaceCannotHoldItself) {
  EXPECT_NE(RenderSource("{% set ns = namespace(a=1) %}{% set ns.self = [ns] %}{{ ns }}")
                .find("inside itself"),
            std::string::npos);
}

TEST(ChatTemplateTest, RenderIsBounded) {
  auto t = ChatTemplate::Parse(
      "{% for a in range(1000) %}{% for b in range(1000) %}{% for c in range(1000) %}x"
      "{% endfor %}{% endfor %}{% endfor %}");
  ASSERT_TRUE(t.ok());
  t->set_limits(100000, 1 << 20);
  auto out = t->RenderWithContext(nlohmann::json::object());
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), absl::StatusCode::kResourceExhausted) << out.status();
  // Doubling a string in a loop stops at the output limit, not at memory exhaustion.
  t = ChatTemplate::Parse(
      "{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}{{ ns.s | length }}");
  ASSERT_TRUE(t.ok());
  t->set_limits(100000, 1 << 20);
  out = t->RenderWithContext(nlohmann::json::object());
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("too long"), std::string::npos) << out.status();
}

TEST(ChatTemplateTest, BuiltinsMatchTheModelsTemplates) {
  for (const auto& [builtin, file] :
       std::vector<std::pair<std::string, std::string>>{{"chatml", "qwen2"},
                                                        {"llama3", "llama3"},
                                                        {"llama2", "llama2"},
                                                        {"mistral", "mistral"},
                                                        {"gemma", "gemma"},
                                                        {"phi3", "phi3"}}) {
    auto source = BuiltinChatTemplate(builtin);
    ASSERT_TRUE(source.ok()) << builtin;
    EXPECT_EQ(*source, ReadTemplate(file)) << builtin;
  }
  EXPECT_EQ(BuiltinChatTemplate("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST(ChatTemplateTest, SelectPrefersOverride) {
  auto t = SelectChatTemplate("{{ 'model' }}", "");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t->RenderWithContext(nlohmann::json::object()), "model");
  t = SelectChatTemplate("{% macro x %}", "llama3");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->source(), *BuiltinChatTemplate("llama3"));
  t = SelectChatTemplate("{{ 'model' }}", "{{ 'override' }}");
  EXPECT_EQ(*t->RenderWithContext(nlohmann::json::object()), "override");
  auto bad = SelectChatTemplate("{% macro x %}{% endmacro %}", "");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("--chat-template"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("unsupported tag 'macro'"), std::string::npos);
  bad = SelectChatTemplate("", "");
  EXPECT_NE(bad.status().message().find("carries no chat template"), std::string::npos);
  EXPECT_FALSE(SelectChatTemplate("", "nosuchname").ok());
}

}  // namespace
}  // namespace tandem::model
