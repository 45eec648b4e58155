#include "deploy/internal/yaml_writer.h"

#include "gtest/gtest.h"
#include "yaml-cpp/yaml.h"

namespace tandem::deploy::internal {
namespace {

using Json = nlohmann::ordered_json;

TEST(YamlWriterTest, WritesBlockStyleInInsertionOrder) {
  Json doc = {{"kind", "Service"},
              {"metadata", {{"name", "x"}, {"labels", Json::object()}}},
              {"ports", Json::array({{{"name", "http"}, {"port", 80}}})},
              {"args", {"--listen", "0.0.0.0:80"}}};
  EXPECT_EQ(WriteYaml(doc),
            "kind: Service\n"
            "metadata:\n"
            "  name: x\n"
            "  labels: {}\n"
            "ports:\n"
            "- name: http\n"
            "  port: 80\n"
            "args:\n"
            "- \"--listen\"\n"
            "- \"0.0.0.0:80\"\n");
}

// Whatever is written must read back as the same value: strings stay strings.
TEST(YamlWriterTest, AmbiguousStringsRoundTrip) {
  const char* tricky[] = {
      "true", "no",       "80",          "1e3",      "0x1F",           "",
      "a: b", "- x",      "#c",          "12:30",    "null",           "~",
      "x ",   " x",       "line\nbreak", "quote\"d", "$(POD_IP):8080", "16Gi",
      "500m", "'single'", "{braces}",    "[list]",   "*alias",         "&anchor",
      "!tag", "%percent", "@at",         "`tick`",   "a #comment"};
  for (const char* text : tricky) {
    Json doc = {{"value", text}, {"list", {text}}};
    YAML::Node node = YAML::Load(WriteYaml(doc));
    EXPECT_EQ(node["value"].as<std::string>(), text) << WriteYaml(doc);
    EXPECT_EQ(node["value"].Tag() == "!" || IsPlainYamlString(text), true);
    EXPECT_EQ(node["list"][0].as<std::string>(), text);
    if (!IsPlainYamlString(text)) {
      EXPECT_EQ(node["value"].Tag(), "!") << text;
    }
  }
}

TEST(YamlWriterTest, NumbersAndBooleansStayTyped) {
  Json doc = {{"n", 3}, {"b", false}, {"f", 0.5}};
  YAML::Node node = YAML::Load(WriteYaml(doc));
  EXPECT_EQ(node["n"].as<int>(), 3);
  EXPECT_EQ(node["b"].as<bool>(), false);
  EXPECT_EQ(node["n"].Tag(), "?");  // plain scalar: a YAML integer, not a string
}

}  // namespace
}  // namespace tandem::deploy::internal
