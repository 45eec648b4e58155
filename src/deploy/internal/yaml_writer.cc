#include "deploy/internal/yaml_writer.h"

#include "absl/strings/string_view.h"

#include "absl/strings/ascii.h"

namespace tandem::deploy::internal {
namespace {

using Json = nlohmann::ordered_json;

bool LooksLikeNumber(absl::string_view text) {
  if (text.empty()) return false;
  size_t i = (text[0] == '-' || text[0] == '+') ? 1 : 0;
  if (i == text.size()) return false;
  bool digit = false;
  for (; i < text.size(); ++i) {
    char c = text[i];
    if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      digit = true;
    } else if (c != '.' && c != 'e' && c != 'E' && c != '_' && c != '+' && c != '-' && c != 'x' &&
               c != 'o' && c != ':' && !absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return digit;
}

// JSON escapes are valid in YAML double-quoted scalars; invalid UTF-8 becomes U+FFFD rather than
// an exception.
std::string Dump(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string Scalar(const Json& value) {
  if (value.is_string()) {
    const std::string& text = value.get_ref<const std::string&>();
    return IsPlainYamlString(text) ? text : Dump(value);
  }
  return Dump(value);  // numbers, booleans and null are written as JSON writes them
}

bool IsEmptyCollection(const Json& value) {
  return (value.is_object() || value.is_array()) && value.empty();
}

void Write(const Json& value, int indent, std::string& out);

void WriteKey(const std::string& key, std::string& out) {
  out += IsPlainYamlString(key) ? key : Dump(Json(key));
  out += ":";
}

void WriteObject(const Json& object, int indent, std::string& out, bool first_inline) {
  bool first = true;
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (!(first && first_inline)) out.append(indent, ' ');
    first = false;
    WriteKey(it.key(), out);
    const Json& child = it.value();
    if (IsEmptyCollection(child)) {
      out += child.is_object() ? " {}\n" : " []\n";
    } else if (child.is_object()) {
      out += "\n";
      Write(child, indent + 2, out);
    } else if (child.is_array()) {
      out += "\n";
      Write(child, indent, out);  // sequences under a key sit at the key's indentation
    } else {
      out += " ";
      out += Scalar(child);
      out += "\n";
    }
  }
}

void WriteArray(const Json& array, int indent, std::string& out) {
  for (const Json& item : array) {
    out.append(indent, ' ');
    out += "-";
    if (IsEmptyCollection(item)) {
      out += item.is_object() ? " {}\n" : " []\n";
    } else if (item.is_object()) {
      out += " ";
      WriteObject(item, indent + 2, out, /*first_inline=*/true);
    } else if (item.is_array()) {
      out += "\n";
      WriteArray(item, indent + 2, out);
    } else {
      out += " ";
      out += Scalar(item);
      out += "\n";
    }
  }
}

void Write(const Json& value, int indent, std::string& out) {
  if (value.is_object()) {
    WriteObject(value, indent, out, /*first_inline=*/false);
  } else if (value.is_array()) {
    WriteArray(value, indent, out);
  } else {
    out.append(indent, ' ');
    out += Scalar(value);
    out += "\n";
  }
}

}  // namespace

bool IsPlainYamlString(const std::string& text) {
  if (text.empty()) return false;
  static constexpr absl::string_view kReserved[] = {
      "true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", ".inf", "-.inf", ".nan"};
  std::string lower = absl::AsciiStrToLower(text);
  for (absl::string_view word : kReserved) {
    if (lower == word) return false;
  }
  if (LooksLikeNumber(text)) return false;
  // Conservative: letters, digits and a few punctuation marks that never start or end YAML
  // syntax in the middle of a block scalar.
  const char first = text.front();
  if (!(absl::ascii_isalnum(static_cast<unsigned char>(first)) || first == '/' || first == '.' ||
        first == '_' || first == '$')) {
    return false;
  }
  if (text.back() == ':' || text.back() == ' ') return false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) continue;
    switch (c) {
      case '-':
      case '_':
      case '.':
      case '/':
      case '=':
      case '@':
      case '$':
      case '(':
      case ')':
      case '+':
        continue;
      case ':':
        // "a:b" is fine, "a: b" starts a mapping.
        if (i + 1 < text.size() && text[i + 1] != ' ') continue;
        return false;
      default:
        return false;
    }
  }
  return true;
}

std::string WriteYaml(const nlohmann::ordered_json& value) {
  std::string out;
  Write(value, 0, out);
  return out;
}

}  // namespace tandem::deploy::internal
