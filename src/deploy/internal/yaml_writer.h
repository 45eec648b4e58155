// Writes a JSON value as block-style YAML with the keys in insertion order, so rendered
// manifests are byte-for-byte stable and read like hand-written ones.
//
//   nlohmann::ordered_json doc = {{"apiVersion", "v1"}, {"kind", "Service"}};
//   std::string text = WriteYaml(doc);  // "apiVersion: v1\nkind: Service\n"
//
// Strings that YAML would read as something else ("true", "80", "a: b", "") are double-quoted
// with JSON escapes, which are valid YAML. Thread-safety: pure function.
#pragma once

#include <string>

#include "nlohmann/json.hpp"

namespace tandem::deploy::internal {

std::string WriteYaml(const nlohmann::ordered_json& value);

// True when `text` can be written as a plain YAML scalar and reads back as the same string.
bool IsPlainYamlString(const std::string& text);

}  // namespace tandem::deploy::internal
