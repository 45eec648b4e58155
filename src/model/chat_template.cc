#include "model/chat_template.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <optional>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/status.h"

namespace tandem::model {
namespace jinja {
namespace {

// ---------------------------------------------------------------------------------------------
// Values

struct Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion-ordered, like Python

struct Value {
  enum class Type { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict };
  Type type = Type::kUndefined;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::shared_ptr<const std::string> s;
  std::shared_ptr<List> list;
  std::shared_ptr<Dict> dict;  // namespaces are dicts assigned through `set ns.x`

  static Value None() { return Value{Type::kNone}; }
  static Value Bool(bool v) {
    Value x{Type::kBool};
    x.b = v;
    return x;
  }
  static Value Int(int64_t v) {
    Value x{Type::kInt};
    x.i = v;
    return x;
  }
  static Value Float(double v) {
    Value x{Type::kFloat};
    x.f = v;
    return x;
  }
  static Value Str(std::string v) {
    Value x{Type::kString};
    x.s = std::make_shared<const std::string>(std::move(v));
    return x;
  }
  static Value MakeList(List v = {}) {
    Value x{Type::kList};
    x.list = std::make_shared<List>(std::move(v));
    return x;
  }
  static Value MakeDict(Dict v = {}) {
    Value x{Type::kDict};
    x.dict = std::make_shared<Dict>(std::move(v));
    return x;
  }
  bool is_undefined() const { return type == Type::kUndefined; }
  bool is_number() const { return type == Type::kInt || type == Type::kFloat; }
  double number() const { return type == Type::kInt ? static_cast<double>(i) : f; }
  const std::string& str() const { return *s; }
  const Value* Find(std::string_view key) const {
    if (type != Type::kDict) return nullptr;
    for (const auto& [k, v] : *dict) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

Value FromJson(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null:
      return Value::None();
    case nlohmann::json::value_t::boolean:
      return Value::Bool(j.get<bool>());
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return Value::Int(j.get<int64_t>());
    case nlohmann::json::value_t::number_float:
      return Value::Float(j.get<double>());
    case nlohmann::json::value_t::string:
      return Value::Str(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      List l;
      for (const auto& e : j) l.push_back(FromJson(e));
      return Value::MakeList(std::move(l));
    }
    case nlohmann::json::value_t::object: {
      Dict d;
      for (auto it = j.begin(); it != j.end(); ++it) d.emplace_back(it.key(), FromJson(it.value()));
      return Value::MakeDict(std::move(d));
    }
    default:
      return Value{};
  }
}

// Whether `v` is or contains the dict `target`: namespaces are the only mutable values, and
// storing one inside itself would make printing it recurse without end.
bool Reaches(const Value& v, const Dict* target) {
  if (v.type == Value::Type::kDict) {
    if (v.dict.get() == target) return true;
    for (const auto& [k, x] : *v.dict) {
      if (Reaches(x, target)) return true;
    }
  } else if (v.type == Value::Type::kList) {
    for (const Value& x : *v.list) {
      if (Reaches(x, target)) return true;
    }
  }
  return false;
}

bool Truthy(const Value& v) {
  switch (v.type) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return false;
    case Value::Type::kBool:
      return v.b;
    case Value::Type::kInt:
      return v.i != 0;
    case Value::Type::kFloat:
      return v.f != 0;
    case Value::Type::kString:
      return !v.s->empty();
    case Value::Type::kList:
      return !v.list->empty();
    case Value::Type::kDict:
      return !v.dict->empty();
  }
  return false;
}

std::string FormatFloat(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d > 0 ? "inf" : "-inf";
  // Python's repr: the shortest text that reads back; integral values keep ".0".
  char buf[64];
  for (int precision = 1; precision <= 17; ++precision) {
    snprintf(buf, sizeof(buf), "%.*g", precision, d);
    if (std::strtod(buf, nullptr) == d) break;
  }
  std::string s = buf;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

std::string Repr(const Value& v);

// str(): what {{ }} prints.
std::string ToString(const Value& v) {
  switch (v.type) {
    case Value::Type::kUndefined:
      return "";
    case Value::Type::kNone:
      return "None";
    case Value::Type::kBool:
      return v.b ? "True" : "False";
    case Value::Type::kInt:
      return std::to_string(v.i);
    case Value::Type::kFloat:
      return FormatFloat(v.f);
    case Value::Type::kString:
      return *v.s;
    default:
      return Repr(v);
  }
}

std::string Repr(const Value& v) {
  switch (v.type) {
    case Value::Type::kString: {
      const bool has_single = v.s->find('\'') != std::string::npos;
      const bool has_double = v.s->find('"') != std::string::npos;
      const char q = has_single && !has_double ? '"' : '\'';
      std::string out(1, q);
      for (char c : *v.s) {
        if (c == q || c == '\\') out.push_back('\\');
        if (c == '\n') {
          out += "\\n";
          continue;
        }
        out.push_back(c);
      }
      out.push_back(q);
      return out;
    }
    case Value::Type::kList: {
      std::string out = "[";
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) out += ", ";
        out += Repr((*v.list)[k]);
      }
      return out + "]";
    }
    case Value::Type::kDict: {
      std::string out = "{";
      bool first = true;
      for (const auto& [key, val] : *v.dict) {
        if (!first) out += ", ";
        first = false;
        out += Repr(Value::Str(key)) + ": " + Repr(val);
      }
      return out + "}";
    }
    default:
      return ToString(v);
  }
}

void JsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          *out += buf;
        } else {
          out->push_back(static_cast<char>(c));  // ensure_ascii=False, as Hugging Face renders
        }
    }
  }
  out->push_back('"');
}

// json.dumps(v, ensure_ascii=False, indent=indent) as Hugging Face's tojson filter calls it.
void ToJson(const Value& v, int indent, int depth, std::string* out) {
  auto newline = [&](int d) {
    out->push_back('\n');
    out->append(static_cast<size_t>(indent) * d, ' ');
  };
  switch (v.type) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      *out += "null";
      return;
    case Value::Type::kBool:
      *out += v.b ? "true" : "false";
      return;
    case Value::Type::kInt:
      *out += std::to_string(v.i);
      return;
    case Value::Type::kFloat:
      *out += FormatFloat(v.f);
      return;
    case Value::Type::kString:
      JsonString(*v.s, out);
      return;
    case Value::Type::kList: {
      if (v.list->empty()) {
        *out += "[]";
        return;
      }
      out->push_back('[');
      for (size_t k = 0; k < v.list->size(); ++k) {
        if (k) *out += indent >= 0 ? "," : ", ";
        if (indent >= 0) newline(depth + 1);
        ToJson((*v.list)[k], indent, depth + 1, out);
      }
      if (indent >= 0) newline(depth);
      out->push_back(']');
      return;
    }
    case Value::Type::kDict: {
      if (v.dict->empty()) {
        *out += "{}";
        return;
      }
      out->push_back('{');
      bool first = true;
      for (const auto& [key, val] : *v.dict) {
        if (!first) *out += indent >= 0 ? "," : ", ";
        first = false;
        if (indent >= 0) newline(depth + 1);
        JsonString(key, out);
        *out += ": ";
        ToJson(val, indent, depth + 1, out);
      }
      if (indent >= 0) newline(depth);
      out->push_back('}');
      return;
    }
  }
}

bool Equal(const Value& a, const Value& b) {
  if (a.is_number() && b.is_number()) return a.number() == b.number();
  if (a.type == Value::Type::kBool && b.type == Value::Type::kBool) return a.b == b.b;
  if (a.type != b.type) return false;
  switch (a.type) {
    case Value::Type::kUndefined:
    case Value::Type::kNone:
      return true;
    case Value::Type::kString:
      return *a.s == *b.s;
    case Value::Type::kList:
      if (a.list->size() != b.list->size()) return false;
      for (size_t k = 0; k < a.list->size(); ++k) {
        if (!Equal((*a.list)[k], (*b.list)[k])) return false;
      }
      return true;
    case Value::Type::kDict:
      if (a.dict->size() != b.dict->size()) return false;
      for (const auto& [key, val] : *a.dict) {
        const Value* other = b.Find(key);
        if (!other || !Equal(val, *other)) return false;
      }
      return true;
    default:
      return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Lexer

struct Token {
  enum class Kind {
    kText,
    kVarBegin,
    kVarEnd,
    kBlockBegin,
    kBlockEnd,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEnd
  };
  Kind kind;
  std::string text;
  size_t pos;  // byte offset in the source, for error messages
};

class Position {
 public:
  explicit Position(std::string_view source) : source_(source) {}
  std::string At(size_t pos) const {
    int line = 1, column = 1;
    for (size_t k = 0; k < pos && k < source_.size(); ++k) {
      if (source_[k] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return absl::StrCat("chat template line ", line, ", column ", column);
  }

 private:
  std::string_view source_;
};

absl::Status SyntaxError(const Position& where, size_t pos, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where.At(pos), ": ", std::string(what)));
}

bool IsSpaceOrTab(char c) { return c == ' ' || c == '\t'; }
bool IsWhitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

absl::StatusOr<std::vector<Token>> Lex(std::string_view src, const Position& where) {
  std::vector<Token> out;
  size_t pos = 0;
  bool strip_next_text = false;  // after "-%}" / "-}}" / "-#}"
  bool trim_newline = false;     // trim_blocks: after "%}" / "#}"
  auto push_text = [&](size_t begin, size_t end, bool strip_right, bool lstrip_block) {
    std::string text(src.substr(begin, end - begin));
    if (trim_newline) {
      if (text.rfind("\r\n", 0) == 0) {
        text.erase(0, 2);
      } else if (!text.empty() && text[0] == '\n') {
        text.erase(0, 1);
      }
    }
    if (strip_next_text) {
      size_t k = 0;
      while (k < text.size() && IsWhitespace(text[k])) ++k;
      text.erase(0, k);
    }
    if (strip_right) {
      while (!text.empty() && IsWhitespace(text.back())) text.pop_back();
    } else if (lstrip_block) {
      // lstrip_blocks: the spaces and tabs between the start of a line and a block tag go
      // (judged on the source: a tag earlier on the same line keeps them).
      size_t q = end;
      while (q > begin && IsSpaceOrTab(src[q - 1])) --q;
      if (q == 0 || src[q - 1] == '\n') text.erase(text.size() - std::min(text.size(), end - q));
    }
    strip_next_text = false;
    trim_newline = false;
    if (!text.empty()) out.push_back({Token::Kind::kText, std::move(text), begin});
  };
  while (pos < src.size()) {
    // Find the next tag opening.
    size_t open = pos;
    while (true) {
      open = src.find('{', open);
      if (open == std::string_view::npos || open + 1 >= src.size()) {
        open = std::string_view::npos;
        break;
      }
      const char c = src[open + 1];
      if (c == '{' || c == '%' || c == '#') break;
      ++open;
    }
    if (open == std::string_view::npos) {
      push_text(pos, src.size(), false, false);
      break;
    }
    const char kind = src[open + 1];
    const bool minus = open + 2 < src.size() && src[open + 2] == '-';
    const bool plus = open + 2 < src.size() && src[open + 2] == '+';
    push_text(pos, open, minus, (kind == '%' || kind == '#') && !plus);
    size_t p = open + 2 + (minus || plus ? 1 : 0);
    if (kind == '#') {
      const size_t close = src.find("#}", p);
      if (close == std::string_view::npos)
        return SyntaxError(where, open, "comment '{#' is never closed with '#}'");
      strip_next_text = close > p && src[close - 1] == '-';
      trim_newline = !strip_next_text;
      pos = close + 2;
      continue;
    }
    out.push_back({kind == '{' ? Token::Kind::kVarBegin : Token::Kind::kBlockBegin, "", open});
    const char* close_text = kind == '{' ? "}}" : "%}";
    // Expression tokens up to the closing delimiter (which may not appear inside a string).
    while (true) {
      while (p < src.size() && IsWhitespace(src[p])) ++p;
      if (p >= src.size()) {
        return SyntaxError(where, open,
                           absl::StrCat("tag is never closed with '", close_text, "'"));
      }
      if (src[p] == '-' && src.compare(p + 1, 2, close_text) == 0) {
        strip_next_text = true;
        p += 3;
        break;
      }
      if (src.compare(p, 2, close_text) == 0) {
        p += 2;
        trim_newline = kind == '%';
        break;
      }
      const char c = src[p];
      const size_t start = p;
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        while (p < src.size() &&
               (std::isalnum(static_cast<unsigned char>(src[p])) || src[p] == '_'))
          ++p;
        out.push_back({Token::Kind::kName, std::string(src.substr(start, p - start)), start});
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        bool is_float = false;
        while (p < src.size() &&
               (std::isdigit(static_cast<unsigned char>(src[p])) || src[p] == '_'))
          ++p;
        if (p + 1 < src.size() && src[p] == '.' &&
            std::isdigit(static_cast<unsigned char>(src[p + 1]))) {
          is_float = true;
          ++p;
          while (p < src.size() && std::isdigit(static_cast<unsigned char>(src[p]))) ++p;
        }
        if (p < src.size() && (src[p] == 'e' || src[p] == 'E')) {
          size_t q = p + 1;
          if (q < src.size() && (src[q] == '+' || src[q] == '-')) ++q;
          if (q < src.size() && std::isdigit(static_cast<unsigned char>(src[q]))) {
            is_float = true;
            p = q;
            while (p < src.size() && std::isdigit(static_cast<unsigned char>(src[p]))) ++p;
          }
        }
        std::string num(src.substr(start, p - start));
        num.erase(std::remove(num.begin(), num.end(), '_'), num.end());
        out.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInt, num, start});
      } else if (c == '\'' || c == '"') {
        std::string s;
        ++p;
        bool closed = false;
        while (p < src.size()) {
          const char d = src[p];
          if (d == c) {
            closed = true;
            ++p;
            break;
          }
          if (d == '\\' && p + 1 < src.size()) {
            const char e = src[p + 1];
            p += 2;
            switch (e) {
              case 'n':
                s.push_back('\n');
                break;
              case 't':
                s.push_back('\t');
                break;
              case 'r':
                s.push_back('\r');
                break;
              case '0':
                s.push_back('\0');
                break;
              case '\\':
                s.push_back('\\');
                break;
              case '\'':
                s.push_back('\'');
                break;
              case '"':
                s.push_back('"');
                break;
              case '\n':
                break;
              case 'x':
              case 'u':
              case 'U': {
                const int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                uint32_t cp = 0;
                int k = 0;
                for (; k < digits && p < src.size() &&
                       std::isxdigit(static_cast<unsigned char>(src[p]));
                     ++k, ++p) {
                  cp = cp * 16 +
                       static_cast<uint32_t>(std::stoi(std::string(1, src[p]), nullptr, 16));
                }
                if (k != digits || cp > 0x10FFFF) {
                  return SyntaxError(where, start, "bad \\x/\\u escape in string literal");
                }
                // UTF-8 encode.
                if (cp < 0x80) {
                  s.push_back(static_cast<char>(cp));
                } else if (cp < 0x800) {
                  s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
                  s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
                } else if (cp < 0x10000) {
                  s.push_back(static_cast<char>(0xE0 | (cp >> 12)));
                  s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
                  s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
                } else {
                  s.push_back(static_cast<char>(0xF0 | (cp >> 18)));
                  s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
                  s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
                  s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
                }
                break;
              }
              default:
                s.push_back('\\');
                s.push_back(e);
            }
            continue;
          }
          s.push_back(d);
          ++p;
        }
        if (!closed) return SyntaxError(where, start, "string literal is never closed");
        out.push_back({Token::Kind::kString, std::move(s), start});
      } else {
        static const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "+", "-", "*",
                                           "/",  "%",  "~",  "<",  ">",  "(",  ")", "[", "]",
                                           "{",  "}",  ",",  ".",  ":",  "|",  "="};
        bool matched = false;
        for (const char* op : kOps) {
          const size_t n = std::char_traits<char>::length(op);
          if (src.compare(p, n, op) == 0) {
            out.push_back({Token::Kind::kOp, op, p});
            p += n;
            matched = true;
            break;
          }
        }
        if (!matched) {
          return SyntaxError(where, p,
                             absl::StrCat("unexpected character '", std::string(1, c), "' in tag"));
        }
      }
    }
    out.push_back({kind == '{' ? Token::Kind::kVarEnd : Token::Kind::kBlockEnd, "", p});
    pos = p;
  }
  out.push_back({Token::Kind::kEnd, "", src.size()});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kAttr,
    kItem,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kNot,
    kNeg,
    kBinary,
    kAnd,
    kOr,
    kCompare,
    kTernary,
    kList,
    kDict
  };
  Kind kind;
  size_t pos = 0;
  Value literal;
  std::string name;  // name, attribute, filter, test, binary or compare operator
  std::vector<std::unique_ptr<Expr>> args;  // operands / arguments
  std::vector<std::pair<std::string, std::unique_ptr<Expr>>> kwargs;
  bool negated = false;  // "is not"
};
using ExprPtr = std::unique_ptr<Expr>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kBreak, kContinue, kBlock };
  Kind kind;
  size_t pos = 0;
  std::string text;
  ExprPtr expr;  // output / set value / for iterable
  std::vector<std::pair<ExprPtr, std::vector<std::unique_ptr<Node>>>> branches;  // if/elif
  std::vector<std::unique_ptr<Node>> body;  // for body, else branch, block body
  std::vector<std::unique_ptr<Node>> else_body;
  std::vector<std::string> targets;  // for: loop variables; set: name[, attr]
  ExprPtr loop_filter;               // for x in y if cond
};
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

}  // namespace

struct Program {
  std::string source;
  Body body;
};

namespace {

const char* const kFilters[] = {
    "trim",    "length",     "count",      "upper", "lower",  "title",   "capitalize", "tojson",
    "default", "d",          "join",       "items", "list",   "first",   "last",       "reject",
    "select",  "rejectattr", "selectattr", "map",   "string", "int",     "float",      "abs",
    "replace", "safe",       "escape",     "e",     "round",  "unique",  "sort",       "reverse",
    "indent",  "wordcount",  "max",        "min",   "sum",    "dictsort"};
const char* const kTests[] = {"defined",     "undefined", "none",    "string",   "number",
                              "integer",     "float",     "mapping", "iterable", "sequence",
                              "boolean",     "true",      "false",   "equalto",  "eq",
                              "==",          "ne",        "!=",      "odd",      "even",
                              "divisibleby", "in",        "lower",   "upper",    "callable",
                              "sameas",      "gt",        "lt",      "ge",       "le"};
const char* const kFunctions[] = {"raise_exception", "namespace", "range", "dict",
                                  "strftime_now",    "len"};

template <size_t N>
bool OneOf(std::string_view s, const char* const (&list)[N]) {
  for (const char* e : list) {
    if (s == e) return true;
  }
  return false;
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Position& where) : t_(std::move(tokens)), where_(where) {}

  absl::StatusOr<Body> ParseTemplate() {
    Body body;
    std::string end_tag;
    TANDEM_RETURN_IF_ERROR(ParseBody(&body, {}, &end_tag));
    return body;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[std::min(i_++, t_.size() - 1)]; }
  bool IsOp(std::string_view op, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kOp && Peek(ahead).text == op;
  }
  bool IsName(std::string_view name, size_t ahead = 0) const {
    return Peek(ahead).kind == Token::Kind::kName && Peek(ahead).text == name;
  }
  absl::Status Error(std::string_view what) const { return SyntaxError(where_, Peek().pos, what); }
  absl::Status Expect(std::string_view op) {
    if (!IsOp(op)) {
      return Error(absl::StrCat("expected '", std::string(op), "', found ", Describe(Peek())));
    }
    ++i_;
    return absl::OkStatus();
  }
  static std::string Describe(const Token& t) {
    switch (t.kind) {
      case Token::Kind::kVarEnd:
        return "'}}'";
      case Token::Kind::kBlockEnd:
        return "'%}'";
      case Token::Kind::kEnd:
        return "the end of the template";
      case Token::Kind::kString:
        return "a string";
      default:
        return absl::StrCat("'", t.text, "'");
    }
  }
  absl::Status ExpectBlockEnd() {
    if (Peek().kind != Token::Kind::kBlockEnd) {
      return Error(absl::StrCat("expected '%}', found ", Describe(Peek())));
    }
    ++i_;
    return absl::OkStatus();
  }

  // Parses nodes until one of `end_tags` opens a block; leaves that tag's name in `*end_tag`
  // (its remaining tokens unread).
  absl::Status ParseBody(Body* body, std::vector<std::string_view> end_tags, std::string* end_tag) {
    if (++depth_ > kMaxDepth) return Error("template nests too deeply");
    while (true) {
      const Token& tok = Peek();
      if (tok.kind == Token::Kind::kEnd) {
        --depth_;
        if (end_tags.empty()) return absl::OkStatus();
        return Error(absl::StrCat("expected {% ", std::string(end_tags.front()),
                                  " %} before the end of the template"));
      }
      if (tok.kind == Token::Kind::kText) {
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kText;
        n->text = tok.text;
        body->push_back(std::move(n));
        ++i_;
        continue;
      }
      if (tok.kind == Token::Kind::kVarBegin) {
        ++i_;
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kOutput;
        n->pos = tok.pos;
        TANDEM_ASSIGN_OR_RETURN(n->expr, ParseExpression());
        if (Peek().kind != Token::Kind::kVarEnd) {
          return Error(absl::StrCat("expected '}}', found ", Describe(Peek())));
        }
        ++i_;
        body->push_back(std::move(n));
        continue;
      }
      if (tok.kind != Token::Kind::kBlockBegin) return Error("unexpected token");
      const Token& name = Peek(1);
      if (name.kind != Token::Kind::kName) {
        ++i_;
        return Error("expected a tag name after '{%'");
      }
      if (std::find(end_tags.begin(), end_tags.end(), name.text) != end_tags.end()) {
        *end_tag = name.text;
        i_ += 2;
        --depth_;
        return absl::OkStatus();
      }
      i_ += 2;
      const std::string& tag = name.text;
      if (tag == "if") {
        TANDEM_RETURN_IF_ERROR(ParseIf(body, name.pos));
      } else if (tag == "for") {
        TANDEM_RETURN_IF_ERROR(ParseFor(body, name.pos));
      } else if (tag == "set") {
        TANDEM_RETURN_IF_ERROR(ParseSet(body, name.pos));
      } else if (tag == "break" || tag == "continue") {
        if (loop_depth_ == 0)
          return SyntaxError(where_, name.pos, absl::StrCat("'", tag, "' outside a for loop"));
        auto n = std::make_unique<Node>();
        n->kind = tag == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
        TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
        body->push_back(std::move(n));
      } else if (tag == "generation") {
        // Hugging Face's marker for assistant tokens: renders its body unchanged.
        TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
        auto n = std::make_unique<Node>();
        n->kind = Node::Kind::kBlock;
        std::string end;
        TANDEM_RETURN_IF_ERROR(ParseBody(&n->body, {"endgeneration"}, &end));
        TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
        body->push_back(std::move(n));
      } else {
        return SyntaxError(where_, name.pos,
                           absl::StrCat("unsupported tag '", tag,
                                        "'; supported: if, elif, else, for, set, break, "
                                        "continue, generation"));
      }
    }
  }

  absl::Status ParseIf(Body* body, size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kIf;
    n->pos = pos;
    while (true) {
      TANDEM_ASSIGN_OR_RETURN(ExprPtr cond, ParseExpression());
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      Body branch;
      std::string end;
      TANDEM_RETURN_IF_ERROR(ParseBody(&branch, {"elif", "else", "endif"}, &end));
      n->branches.emplace_back(std::move(cond), std::move(branch));
      if (end == "elif") continue;
      if (end == "else") {
        TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
        TANDEM_RETURN_IF_ERROR(ParseBody(&n->else_body, {"endif"}, &end));
      }
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      break;
    }
    body->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseFor(Body* body, size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kFor;
    n->pos = pos;
    while (true) {
      if (Peek().kind != Token::Kind::kName) return Error("expected a loop variable name");
      n->targets.push_back(Next().text);
      if (!IsOp(",")) break;
      ++i_;
    }
    if (!IsName("in")) return Error(absl::StrCat("expected 'in', found ", Describe(Peek())));
    ++i_;
    TANDEM_ASSIGN_OR_RETURN(n->expr, ParseOr());  // no conditional expression: "if" filters
    if (IsName("if")) {
      ++i_;
      TANDEM_ASSIGN_OR_RETURN(n->loop_filter, ParseOr());
    }
    if (IsName("recursive")) return Error("recursive loops are not supported");
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    std::string end;
    ++loop_depth_;
    TANDEM_RETURN_IF_ERROR(ParseBody(&n->body, {"else", "endfor"}, &end));
    --loop_depth_;
    if (end == "else") {
      TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
      TANDEM_RETURN_IF_ERROR(ParseBody(&n->else_body, {"endfor"}, &end));
    }
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    body->push_back(std::move(n));
    return absl::OkStatus();
  }

  absl::Status ParseSet(Body* body, size_t pos) {
    auto n = std::make_unique<Node>();
    n->kind = Node::Kind::kSet;
    n->pos = pos;
    if (Peek().kind != Token::Kind::kName) return Error("expected a variable name after 'set'");
    n->targets.push_back(Next().text);
    if (IsOp(".")) {
      ++i_;
      if (Peek().kind != Token::Kind::kName) return Error("expected an attribute name");
      n->targets.push_back(Next().text);
    } else if (IsOp(",")) {
      return Error("tuple assignment in 'set' is not supported");
    }
    if (!IsOp("=")) {
      return Error(
          "block assignment ({% set x %}...{% endset %}) is not supported; use "
          "{% set x = ... %}");
    }
    ++i_;
    TANDEM_ASSIGN_OR_RETURN(n->expr, ParseExpression());
    TANDEM_RETURN_IF_ERROR(ExpectBlockEnd());
    body->push_back(std::move(n));
    return absl::OkStatus();
  }

  ExprPtr Make(Expr::Kind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  absl::StatusOr<ExprPtr> ParseExpression() {
    if (++depth_ > kMaxDepth) return Error("expression nests too deeply");
    const size_t pos = Peek().pos;
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParseOr());
    if (IsName("if")) {
      ++i_;
      auto t = Make(Expr::Kind::kTernary, pos);
      TANDEM_ASSIGN_OR_RETURN(ExprPtr cond, ParseOr());
      ExprPtr other;
      if (IsName("else")) {
        ++i_;
        TANDEM_ASSIGN_OR_RETURN(other, ParseExpression());
      } else {
        other = Make(Expr::Kind::kLiteral, pos);  // undefined
      }
      t->args.push_back(std::move(cond));
      t->args.push_back(std::move(e));
      t->args.push_back(std::move(other));
      e = std::move(t);
    }
    --depth_;
    return e;
  }

  // Each operator in a chain deepens the tree by one: bound chains like nesting.
  absl::Status Deeper(int* chain) {
    ++*chain;
    if (++depth_ > kMaxDepth) return Error("expression nests too deeply");
    return absl::OkStatus();
  }

  absl::StatusOr<ExprPtr> ParseOr() {
    int chain = 0;
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParseAnd());
    while (IsName("or")) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      auto o = Make(Expr::Kind::kOr, Next().pos);
      TANDEM_ASSIGN_OR_RETURN(ExprPtr r, ParseAnd());
      o->args.push_back(std::move(e));
      o->args.push_back(std::move(r));
      e = std::move(o);
    }
    depth_ -= chain;
    return e;
  }

  absl::StatusOr<ExprPtr> ParseAnd() {
    int chain = 0;
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParseNot());
    while (IsName("and")) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      auto a = Make(Expr::Kind::kAnd, Next().pos);
      TANDEM_ASSIGN_OR_RETURN(ExprPtr r, ParseNot());
      a->args.push_back(std::move(e));
      a->args.push_back(std::move(r));
      e = std::move(a);
    }
    depth_ -= chain;
    return e;
  }

  absl::StatusOr<ExprPtr> ParseNot() {
    if (IsName("not")) {
      if (++depth_ > kMaxDepth) return Error("expression nests too deeply");
      auto n = Make(Expr::Kind::kNot, Next().pos);
      TANDEM_ASSIGN_OR_RETURN(ExprPtr inner, ParseNot());
      n->args.push_back(std::move(inner));
      --depth_;
      return n;
    }
    return ParseCompare();
  }

  absl::StatusOr<ExprPtr> ParseCompare() {
    int chain = 0;
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParseConcat());
    while (true) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      std::string op;
      const size_t pos = Peek().pos;
      if (Peek().kind == Token::Kind::kOp &&
          (Peek().text == "==" || Peek().text == "!=" || Peek().text == "<" || Peek().text == ">" ||
           Peek().text == "<=" || Peek().text == ">=")) {
        op = Next().text;
      } else if (IsName("in")) {
        ++i_;
        op = "in";
      } else if (IsName("not") && IsName("in", 1)) {
        i_ += 2;
        op = "not in";
      } else {
        depth_ -= chain;
        return e;
      }
      auto c = Make(Expr::Kind::kCompare, pos);
      c->name = op;
      TANDEM_ASSIGN_OR_RETURN(ExprPtr r, ParseConcat());
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(r));
      e = std::move(c);
    }
  }

  absl::StatusOr<ExprPtr> ParseBinaryLevel(int level) {
    // 0: ~   1: + -   2: * / // %   3: **
    static const std::vector<std::vector<std::string>> kLevels = {
        {"~"}, {"+", "-"}, {"*", "/", "//", "%"}, {"**"}};
    if (level == 4) return ParseUnary();
    int chain = 0;
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParseBinaryLevel(level + 1));
    while (Peek().kind == Token::Kind::kOp &&
           std::find(kLevels[level].begin(), kLevels[level].end(), Peek().text) !=
               kLevels[level].end()) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      auto b = Make(Expr::Kind::kBinary, Peek().pos);
      b->name = Next().text;
      TANDEM_ASSIGN_OR_RETURN(ExprPtr r, ParseBinaryLevel(level + 1));
      b->args.push_back(std::move(e));
      b->args.push_back(std::move(r));
      e = std::move(b);
    }
    depth_ -= chain;
    return e;
  }
  absl::StatusOr<ExprPtr> ParseConcat() { return ParseBinaryLevel(0); }

  absl::StatusOr<ExprPtr> ParseUnary() {
    if (IsOp("-") || IsOp("+")) {
      if (++depth_ > kMaxDepth) return Error("expression nests too deeply");
      const bool neg = Peek().text == "-";
      const size_t pos = Next().pos;
      TANDEM_ASSIGN_OR_RETURN(ExprPtr inner, ParseUnary());
      --depth_;
      if (!neg) return inner;
      auto n = Make(Expr::Kind::kNeg, pos);
      n->args.push_back(std::move(inner));
      return n;
    }
    TANDEM_ASSIGN_OR_RETURN(ExprPtr e, ParsePrimary());
    TANDEM_ASSIGN_OR_RETURN(e, ParsePostfix(std::move(e)));
    // Filters and tests bind tighter than any operator.
    int chain = 0;
    while (true) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      if (IsOp("|")) {
        ++i_;
        if (Peek().kind != Token::Kind::kName) return Error("expected a filter name after '|'");
        const Token& name = Next();
        if (!OneOf(name.text, kFilters)) {
          return SyntaxError(where_, name.pos,
                             absl::StrCat("unsupported filter '", name.text,
                                          "'; supported: ", absl::StrJoin(kFilters, ", ")));
        }
        auto f = Make(Expr::Kind::kFilter, name.pos);
        f->name = name.text;
        f->args.push_back(std::move(e));
        if (IsOp("(")) TANDEM_RETURN_IF_ERROR(ParseArgs(f.get()));
        e = std::move(f);
      } else if (IsName("is")) {
        ++i_;
        auto t = Make(Expr::Kind::kTest, Peek().pos);
        if (IsName("not")) {
          ++i_;
          t->negated = true;
        }
        std::string name;
        if (Peek().kind == Token::Kind::kName) {
          name = Next().text;
        } else if (IsOp("==") || IsOp("!=")) {
          name = Next().text;
        } else {
          return Error("expected a test name after 'is'");
        }
        if (!OneOf(name, kTests)) {
          return SyntaxError(where_, t->pos,
                             absl::StrCat("unsupported test '", name,
                                          "'; supported: ", absl::StrJoin(kTests, ", ")));
        }
        t->name = name;
        t->args.push_back(std::move(e));
        if (IsOp("(")) {
          TANDEM_RETURN_IF_ERROR(ParseArgs(t.get()));
        } else if (Peek().kind == Token::Kind::kString || Peek().kind == Token::Kind::kInt ||
                   Peek().kind == Token::Kind::kFloat ||
                   (Peek().kind == Token::Kind::kName && !IsName("and") && !IsName("or") &&
                    !IsName("else") && !IsName("if") && !IsName("in") && !IsName("not"))) {
          // A test argument without parentheses: `x is divisibleby 3`, `x is sameas none`.
          TANDEM_ASSIGN_OR_RETURN(ExprPtr arg, ParsePrimary());
          t->args.push_back(std::move(arg));
        }
        e = std::move(t);
      } else {
        depth_ -= chain;
        return e;
      }
    }
  }

  absl::Status ParseArgs(Expr* call) {
    TANDEM_RETURN_IF_ERROR(Expect("("));
    while (!IsOp(")")) {
      if (Peek().kind == Token::Kind::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        ++i_;
        TANDEM_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
        call->kwargs.emplace_back(std::move(key), std::move(v));
      } else {
        if (!call->kwargs.empty()) return Error("positional argument after a keyword argument");
        TANDEM_ASSIGN_OR_RETURN(ExprPtr v, ParseExpression());
        call->args.push_back(std::move(v));
      }
      if (!IsOp(",")) break;
      ++i_;
    }
    return Expect(")");
  }

  absl::StatusOr<ExprPtr> ParsePostfix(ExprPtr e) {
    int chain = 0;
    while (true) {
      TANDEM_RETURN_IF_ERROR(Deeper(&chain));
      if (IsOp(".")) {
        ++i_;
        if (Peek().kind != Token::Kind::kName && Peek().kind != Token::Kind::kInt) {
          return Error("expected an attribute name after '.'");
        }
        auto a = Make(Expr::Kind::kAttr, Peek().pos);
        a->name = Next().text;
        a->args.push_back(std::move(e));
        e = std::move(a);
      } else if (IsOp("[")) {
        const size_t pos = Next().pos;
        ExprPtr parts[3];
        bool slice = false;
        for (int k = 0; k < 3; ++k) {
          if (!IsOp(":") && !IsOp("]")) {
            TANDEM_ASSIGN_OR_RETURN(parts[k], ParseExpression());
          }
          if (k < 2 && IsOp(":")) {
            ++i_;
            slice = true;
            continue;
          }
          break;
        }
        TANDEM_RETURN_IF_ERROR(Expect("]"));
        if (!slice && !parts[0]) return SyntaxError(where_, pos, "empty subscript");
        auto s = Make(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, pos);
        s->args.push_back(std::move(e));
        for (auto& p : parts) s->args.push_back(std::move(p));  // may be null (omitted)
        if (!slice) s->args.resize(2);
        e = std::move(s);
      } else if (IsOp("(")) {
        auto c = Make(Expr::Kind::kCall, Peek().pos);
        if (e->kind == Expr::Kind::kName && !OneOf(e->name, kFunctions)) {
          return SyntaxError(where_, e->pos,
                             absl::StrCat("unsupported function '", e->name,
                                          "'; supported: ", absl::StrJoin(kFunctions, ", "),
                                          " and methods of strings and dicts"));
        }
        c->args.push_back(std::move(e));
        TANDEM_RETURN_IF_ERROR(ParseArgs(c.get()));
        e = std::move(c);
      } else {
        depth_ -= chain;
        return e;
      }
    }
  }

  absl::StatusOr<ExprPtr> ParsePrimary() {
    if (++depth_ > kMaxDepth) return Error("expression nests too deeply");
    const Token& tok = Peek();
    ExprPtr e;
    switch (tok.kind) {
      case Token::Kind::kName: {
        ++i_;
        const std::string& n = tok.text;
        if (n == "true" || n == "True" || n == "false" || n == "False") {
          e = Make(Expr::Kind::kLiteral, tok.pos);
          e->literal = Value::Bool(n == "true" || n == "True");
        } else if (n == "none" || n == "None") {
          e = Make(Expr::Kind::kLiteral, tok.pos);
          e->literal = Value::None();
        } else {
          e = Make(Expr::Kind::kName, tok.pos);
          e->name = n;
        }
        break;
      }
      case Token::Kind::kString: {
        std::string s;
        while (Peek().kind == Token::Kind::kString) s += Next().text;  // "a" "b" concatenates
        e = Make(Expr::Kind::kLiteral, tok.pos);
        e->literal = Value::Str(std::move(s));
        break;
      }
      case Token::Kind::kInt: {
        ++i_;
        e = Make(Expr::Kind::kLiteral, tok.pos);
        errno = 0;
        const long long v = std::strtoll(tok.text.c_str(), nullptr, 10);
        if (errno == ERANGE) return SyntaxError(where_, tok.pos, "integer literal out of range");
        e->literal = Value::Int(v);
        break;
      }
      case Token::Kind::kFloat:
        ++i_;
        e = Make(Expr::Kind::kLiteral, tok.pos);
        e->literal = Value::Float(std::strtod(tok.text.c_str(), nullptr));
        break;
      case Token::Kind::kOp:
        if (tok.text == "(") {
          ++i_;
          TANDEM_ASSIGN_OR_RETURN(e, ParseExpression());
          if (IsOp(",")) {  // a tuple: treated as a list
            auto l = Make(Expr::Kind::kList, tok.pos);
            l->args.push_back(std::move(e));
            while (IsOp(",")) {
              ++i_;
              if (IsOp(")")) break;
              TANDEM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
              l->args.push_back(std::move(item));
            }
            e = std::move(l);
          }
          TANDEM_RETURN_IF_ERROR(Expect(")"));
          break;
        }
        if (tok.text == "[") {
          ++i_;
          e = Make(Expr::Kind::kList, tok.pos);
          while (!IsOp("]")) {
            TANDEM_ASSIGN_OR_RETURN(ExprPtr item, ParseExpression());
            e->args.push_back(std::move(item));
            if (!IsOp(",")) break;
            ++i_;
          }
          TANDEM_RETURN_IF_ERROR(Expect("]"));
          break;
        }
        if (tok.text == "{") {
          ++i_;
          e = Make(Expr::Kind::kDict, tok.pos);
          while (!IsOp("}")) {
            TANDEM_ASSIGN_OR_RETURN(ExprPtr key, ParseExpression());
            TANDEM_RETURN_IF_ERROR(Expect(":"));
            TANDEM_ASSIGN_OR_RETURN(ExprPtr value, ParseExpression());
            e->args.push_back(std::move(key));
            e->args.push_back(std::move(value));
            if (!IsOp(",")) break;
            ++i_;
          }
          TANDEM_RETURN_IF_ERROR(Expect("}"));
          break;
        }
        [[fallthrough]];
      default:
        return Error(absl::StrCat("expected an expression, found ", Describe(tok)));
    }
    --depth_;
    return e;
  }

  static constexpr int kMaxDepth = 200;
  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
  const Position& where_;
};

// ---------------------------------------------------------------------------------------------
// Interpreter

enum class Flow { kNormal, kBreak, kContinue };

class Interpreter {
 public:
  Interpreter(const Program& program, int64_t max_steps, int64_t max_output)
      : where_(program.source), max_steps_(max_steps), max_output_(max_output) {}

  absl::StatusOr<std::string> Run(const Body& body, Dict globals) {
    scopes_.push_back(std::move(globals));
    Flow flow;
    TANDEM_RETURN_IF_ERROR(Exec(body, &flow));
    return std::move(out_);
  }

 private:
  absl::Status Error(size_t pos, std::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(where_.At(pos), ": ", std::string(what)));
  }
  absl::Status Step(size_t pos) {
    if (++steps_ > max_steps_) {
      return absl::ResourceExhaustedError(absl::StrCat(
          where_.At(pos), ": rendering took more than ", max_steps_, " steps; stopped"));
    }
    return absl::OkStatus();
  }

  Value Lookup(const std::string& name) const {
    for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
      for (const auto& [k, v] : *it) {
        if (k == name) return v;
      }
    }
    return Value{};
  }
  void Assign(const std::string& name, Value v) {
    for (auto& [k, existing] : scopes_.back()) {
      if (k == name) {
        existing = std::move(v);
        return;
      }
    }
    scopes_.back().emplace_back(name, std::move(v));
  }

  absl::Status Exec(const Body& body, Flow* flow) {
    *flow = Flow::kNormal;
    for (const NodePtr& n : body) {
      TANDEM_RETURN_IF_ERROR(Step(n->pos));
      switch (n->kind) {
        case Node::Kind::kText:
          out_ += n->text;
          break;
        case Node::Kind::kOutput: {
          TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*n->expr));
          out_ += ToString(v);
          break;
        }
        case Node::Kind::kIf: {
          bool taken = false;
          for (const auto& [cond, branch] : n->branches) {
            TANDEM_ASSIGN_OR_RETURN(Value c, Eval(*cond));
            if (Truthy(c)) {
              TANDEM_RETURN_IF_ERROR(Exec(branch, flow));
              taken = true;
              break;
            }
          }
          if (!taken) TANDEM_RETURN_IF_ERROR(Exec(n->else_body, flow));
          if (*flow != Flow::kNormal) return absl::OkStatus();
          break;
        }
        case Node::Kind::kFor:
          TANDEM_RETURN_IF_ERROR(ExecFor(*n));
          break;
        case Node::Kind::kSet: {
          TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*n->expr));
          if (n->targets.size() == 1) {
            Assign(n->targets[0], std::move(v));
          } else {
            Value ns = Lookup(n->targets[0]);
            if (ns.type != Value::Type::kDict) {
              return Error(n->pos, absl::StrCat("cannot set attribute '", n->targets[1], "' of '",
                                                n->targets[0], "': it is not a namespace"));
            }
            if (Reaches(v, ns.dict.get())) {
              return Error(n->pos,
                           absl::StrCat("cannot store '", n->targets[0], "' inside itself"));
            }
            bool found = false;
            for (auto& [k, existing] : *ns.dict) {
              if (k == n->targets[1]) {
                existing = v;
                found = true;
              }
            }
            if (!found) ns.dict->emplace_back(n->targets[1], std::move(v));
          }
          break;
        }
        case Node::Kind::kBreak:
          *flow = Flow::kBreak;
          return absl::OkStatus();
        case Node::Kind::kContinue:
          *flow = Flow::kContinue;
          return absl::OkStatus();
        case Node::Kind::kBlock:
          TANDEM_RETURN_IF_ERROR(Exec(n->body, flow));
          if (*flow != Flow::kNormal) return absl::OkStatus();
          break;
      }
      if (static_cast<int64_t>(out_.size()) > max_output_) {
        return absl::ResourceExhaustedError(absl::StrCat(
            where_.At(n->pos), ": rendered prompt exceeds ", max_output_, " bytes; stopped"));
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<List> Iterate(const Value& v, size_t pos) {
    switch (v.type) {
      case Value::Type::kList:
        return *v.list;
      case Value::Type::kDict: {
        List keys;
        for (const auto& [k, val] : *v.dict) keys.push_back(Value::Str(k));
        return keys;
      }
      case Value::Type::kString: {
        List chars;
        const std::string& s = v.str();
        for (size_t k = 0; k < s.size();) {
          size_t len = 1;
          const auto c = static_cast<unsigned char>(s[k]);
          if (c >= 0xF0)
            len = 4;
          else if (c >= 0xE0)
            len = 3;
          else if (c >= 0xC0)
            len = 2;
          len = std::min(len, s.size() - k);
          chars.push_back(Value::Str(s.substr(k, len)));
          k += len;
        }
        return chars;
      }
      case Value::Type::kUndefined:
      case Value::Type::kNone:
        return List{};
      default:
        return Error(pos, absl::StrCat("cannot iterate over ", Repr(v)));
    }
  }

  absl::Status ExecFor(const Node& n) {
    TANDEM_ASSIGN_OR_RETURN(Value iterable, Eval(*n.expr));
    TANDEM_ASSIGN_OR_RETURN(List items, Iterate(iterable, n.pos));
    scopes_.emplace_back();
    auto bind = [&](const Value& item) -> absl::Status {
      if (n.targets.size() == 1) {
        Assign(n.targets[0], item);
        return absl::OkStatus();
      }
      if (item.type != Value::Type::kList || item.list->size() != n.targets.size()) {
        return Error(n.pos, absl::StrCat("cannot unpack ", Repr(item), " into ", n.targets.size(),
                                         " loop variables"));
      }
      for (size_t k = 0; k < n.targets.size(); ++k) Assign(n.targets[k], (*item.list)[k]);
      return absl::OkStatus();
    };
    if (n.loop_filter) {
      List kept;
      for (const Value& item : items) {
        TANDEM_RETURN_IF_ERROR(bind(item));
        TANDEM_ASSIGN_OR_RETURN(Value keep, Eval(*n.loop_filter));
        if (Truthy(keep)) kept.push_back(item);
      }
      items = std::move(kept);
    }
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t k = 0; k < length; ++k) {
      TANDEM_RETURN_IF_ERROR(bind(items[k]));
      Dict loop = {{"index", Value::Int(k + 1)},
                   {"index0", Value::Int(k)},
                   {"revindex", Value::Int(length - k)},
                   {"revindex0", Value::Int(length - k - 1)},
                   {"first", Value::Bool(k == 0)},
                   {"last", Value::Bool(k == length - 1)},
                   {"length", Value::Int(length)},
                   {"previtem", k > 0 ? items[k - 1] : Value{}},
                   {"nextitem", k + 1 < length ? items[k + 1] : Value{}}};
      Assign("loop", Value::MakeDict(std::move(loop)));
      Flow flow;
      TANDEM_RETURN_IF_ERROR(Exec(n.body, &flow));
      if (flow == Flow::kBreak) break;
    }
    if (length == 0) {
      Flow flow;
      TANDEM_RETURN_IF_ERROR(Exec(n.else_body, &flow));
    }
    scopes_.pop_back();
    return absl::OkStatus();
  }

  absl::StatusOr<Value> Eval(const Expr& e) {
    TANDEM_RETURN_IF_ERROR(Step(e.pos));
    switch (e.kind) {
      case Expr::Kind::kLiteral:
        return e.literal;
      case Expr::Kind::kName:
        return Lookup(e.name);
      case Expr::Kind::kAttr: {
        TANDEM_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        if (const Value* v = obj.Find(e.name)) return *v;
        return Value{};
      }
      case Expr::Kind::kItem: {
        TANDEM_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
        TANDEM_ASSIGN_OR_RETURN(Value key, Eval(*e.args[1]));
        return Subscript(obj, key, e.pos);
      }
      case Expr::Kind::kSlice:
        return EvalSlice(e);
      case Expr::Kind::kCall:
        return EvalCall(e);
      case Expr::Kind::kFilter:
        return EvalFilter(e);
      case Expr::Kind::kTest: {
        TANDEM_ASSIGN_OR_RETURN(bool r, EvalTest(e));
        return Value::Bool(r != e.negated);
      }
      case Expr::Kind::kNot: {
        TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        return Value::Bool(!Truthy(v));
      }
      case Expr::Kind::kNeg: {
        TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*e.args[0]));
        if (v.type == Value::Type::kInt) return Value::Int(-v.i);
        if (v.type == Value::Type::kFloat) return Value::Float(-v.f);
        return Error(e.pos, absl::StrCat("cannot negate ", Repr(v)));
      }
      case Expr::Kind::kAnd: {
        TANDEM_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        if (!Truthy(l)) return l;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kOr: {
        TANDEM_ASSIGN_OR_RETURN(Value l, Eval(*e.args[0]));
        if (Truthy(l)) return l;
        return Eval(*e.args[1]);
      }
      case Expr::Kind::kTernary: {
        TANDEM_ASSIGN_OR_RETURN(Value c, Eval(*e.args[0]));
        return Eval(*e.args[Truthy(c) ? 1 : 2]);
      }
      case Expr::Kind::kCompare:
        return EvalCompare(e);
      case Expr::Kind::kBinary:
        return EvalBinary(e);
      case Expr::Kind::kList: {
        List l;
        for (const auto& a : e.args) {
          TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*a));
          l.push_back(std::move(v));
        }
        return Value::MakeList(std::move(l));
      }
      case Expr::Kind::kDict: {
        Dict d;
        for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
          TANDEM_ASSIGN_OR_RETURN(Value key, Eval(*e.args[k]));
          TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
          if (key.type != Value::Type::kString) {
            return Error(e.args[k]->pos, "dict keys must be strings");
          }
          d.emplace_back(key.str(), std::move(v));
        }
        return Value::MakeDict(std::move(d));
      }
    }
    return Error(e.pos, "internal error: unknown expression");
  }

  absl::StatusOr<Value> Subscript(const Value& obj, const Value& key, size_t pos) {
    if (obj.type == Value::Type::kDict) {
      if (key.type == Value::Type::kString) {
        if (const Value* v = obj.Find(key.str())) return *v;
      }
      return Value{};
    }
    if ((obj.type == Value::Type::kList || obj.type == Value::Type::kString) &&
        key.type == Value::Type::kInt) {
      const int64_t n = obj.type == Value::Type::kList ? static_cast<int64_t>(obj.list->size())
                                                       : static_cast<int64_t>(obj.s->size());
      int64_t k = key.i < 0 ? key.i + n : key.i;
      if (k < 0 || k >= n) return Value{};  // Jinja: out of range is undefined
      if (obj.type == Value::Type::kList) return (*obj.list)[k];
      return Value::Str(std::string(1, (*obj.s)[k]));
    }
    if (obj.is_undefined() || obj.type == Value::Type::kNone) return Value{};
    return Error(pos, absl::StrCat("cannot subscript ", Repr(obj), " with ", Repr(key)));
  }

  absl::StatusOr<Value> EvalSlice(const Expr& e) {
    TANDEM_ASSIGN_OR_RETURN(Value obj, Eval(*e.args[0]));
    std::optional<int64_t> bounds[3];
    for (int k = 0; k < 3; ++k) {
      if (!e.args[k + 1]) continue;
      TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k + 1]));
      if (v.type == Value::Type::kNone) continue;
      if (v.type != Value::Type::kInt) return Error(e.pos, "slice bounds must be integers");
      bounds[k] = v.i;
    }
    const int64_t step = bounds[2].value_or(1);
    if (step == 0) return Error(e.pos, "slice step cannot be zero");
    int64_t n;
    if (obj.type == Value::Type::kList)
      n = static_cast<int64_t>(obj.list->size());
    else if (obj.type == Value::Type::kString)
      n = static_cast<int64_t>(obj.s->size());
    else
      return Error(e.pos, absl::StrCat("cannot slice ", Repr(obj)));
    auto clamp = [&](std::optional<int64_t> b, int64_t def) {
      if (!b) return def;
      int64_t v = *b < 0 ? *b + n : *b;
      if (step > 0) return std::clamp<int64_t>(v, 0, n);
      return std::clamp<int64_t>(v, -1, n - 1);
    };
    const int64_t start = clamp(bounds[0], step > 0 ? 0 : n - 1);
    const int64_t stop = clamp(bounds[1], step > 0 ? n : -1);
    List l;
    std::string s;
    for (int64_t k = start; step > 0 ? k < stop : k > stop; k += step) {
      if (obj.type == Value::Type::kList)
        l.push_back((*obj.list)[k]);
      else
        s.push_back((*obj.s)[k]);
    }
    if (obj.type == Value::Type::kList) return Value::MakeList(std::move(l));
    return Value::Str(std::move(s));
  }

  absl::StatusOr<std::vector<Value>> EvalArgs(const Expr& e, size_t first) {
    std::vector<Value> args;
    for (size_t k = first; k < e.args.size(); ++k) {
      TANDEM_ASSIGN_OR_RETURN(Value v, Eval(*e.args[k]));
      args.push_back(std::move(v));
    }
    return args;
  }
  absl::StatusOr<Value> Kwarg(const Expr& e, std::string_view name) {
    for (const auto& [k, v] : e.kwargs) {
      if (k == name) return Eval(*v);
    }
    return Value{};
  }

  absl::StatusOr<Value> EvalCall(const Expr& e) {
    const Expr& callee = *e.args[0];
    if (callee.kind == Expr::Kind::kName) {
      TANDEM_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 1));
      const std::string& f = callee.name;
      if (f == "raise_exception") {
        return absl::InvalidArgumentError(
            absl::StrCat("chat template raised an error: ", args.empty() ? "" : ToString(args[0])));
      }
      if (f == "namespace" || f == "dict") {
        Dict d;
        for (const auto& [k, v] : e.kwargs) {
          TANDEM_ASSIGN_OR_RETURN(Value val, Eval(*v));
          d.emplace_back(k, std::move(val));
        }
        return Value::MakeDict(std::move(d));
      }
      if (f == "range") {
        int64_t a = 0, b = 0, step = 1;
        for (const Value& v : args) {
          if (v.type != Value::Type::kInt) return Error(e.pos, "range() takes integers");
        }
        if (args.size() == 1)
          b = args[0].i;
        else if (args.size() >= 2)
          a = args[0].i, b = args[1].i;
        if (args.size() == 3) step = args[2].i;
        if (args.empty() || args.size() > 3 || step == 0)
          return Error(e.pos, "bad range() arguments");
        List l;
        for (int64_t k = a; step > 0 ? k < b : k > b; k += step) {
          if (static_cast<int64_t>(l.size()) >= max_steps_) return Error(e.pos, "range() too long");
          l.push_back(Value::Int(k));
        }
        return Value::MakeList(std::move(l));
      }
      if (f == "len") {
        if (args.size() != 1) return Error(e.pos, "len() takes one argument");
        return Length(args[0], e.pos);
      }
      if (f == "strftime_now") {
        // Rendering must be reproducible: the date comes from the caller ("date_string"),
        // else a fixed one.
        Value d = Lookup("date_string");
        return d.type == Value::Type::kString ? d : Value::Str("26 Jul 2024");
      }
      return Error(callee.pos, absl::StrCat("unsupported function '", f, "'"));
    }
    if (callee.kind != Expr::Kind::kAttr) {
      return Error(e.pos, "only functions and methods can be called");
    }
    TANDEM_ASSIGN_OR_RETURN(Value obj, Eval(*callee.args[0]));
    TANDEM_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 1));
    return CallMethod(obj, callee.name, args, e.pos);
  }

  absl::StatusOr<Value> Length(const Value& v, size_t pos) {
    switch (v.type) {
      case Value::Type::kString: {
        int64_t n = 0;  // characters, not bytes
        for (unsigned char c : v.str()) n += (c & 0xC0) != 0x80;
        return Value::Int(n);
      }
      case Value::Type::kList:
        return Value::Int(static_cast<int64_t>(v.list->size()));
      case Value::Type::kDict:
        return Value::Int(static_cast<int64_t>(v.dict->size()));
      case Value::Type::kUndefined:
        return Value::Int(0);
      default:
        return Error(pos, absl::StrCat("object of type ", Repr(v), " has no length"));
    }
  }

  static std::string Strip(const std::string& s, const std::string* chars, bool left, bool right) {
    auto strip_char = [&](char c) {
      return chars ? chars->find(c) != std::string::npos : IsWhitespace(c);
    };
    size_t a = 0, b = s.size();
    if (left)
      while (a < b && strip_char(s[a])) ++a;
    if (right)
      while (b > a && strip_char(s[b - 1])) --b;
    return s.substr(a, b - a);
  }

  static std::string Title(const std::string& s, bool only_first) {
    std::string out = s;
    bool start = true;
    for (size_t k = 0; k < out.size(); ++k) {
      const char c = out[k];
      if (std::isalpha(static_cast<unsigned char>(c))) {
        out[k] = start ? static_cast<char>(std::toupper(c)) : static_cast<char>(std::tolower(c));
        start = false;
      } else if (!only_first) {
        start = true;
      }
      if (only_first && k == 0) start = false;
    }
    return out;
  }

  absl::StatusOr<Value> CallMethod(const Value& obj, const std::string& m,
                                   const std::vector<Value>& args, size_t pos) {
    if (obj.type == Value::Type::kString) {
      const std::string& s = obj.str();
      auto arg_str = [&](size_t k) -> const std::string* {
        return k < args.size() && args[k].type == Value::Type::kString ? &args[k].str() : nullptr;
      };
      if (m == "strip" || m == "lstrip" || m == "rstrip") {
        return Value::Str(Strip(s, arg_str(0), m != "rstrip", m != "lstrip"));
      }
      if (m == "upper" || m == "lower") {
        std::string r = s;
        for (char& c : r) c = static_cast<char>(m == "upper" ? std::toupper(c) : std::tolower(c));
        return Value::Str(std::move(r));
      }
      if (m == "title") return Value::Str(Title(s, false));
      if (m == "capitalize") {
        std::string r = s;
        for (char& c : r) c = static_cast<char>(std::tolower(c));
        if (!r.empty()) r[0] = static_cast<char>(std::toupper(r[0]));
        return Value::Str(std::move(r));
      }
      if ((m == "startswith" || m == "endswith") && arg_str(0)) {
        const std::string& p = *arg_str(0);
        const bool r = m == "startswith" ? s.rfind(p, 0) == 0
                                         : s.size() >= p.size() &&
                                               s.compare(s.size() - p.size(), p.size(), p) == 0;
        return Value::Bool(r);
      }
      if (m == "split") {
        List parts;
        const std::string* sep = arg_str(0);
        int64_t max_split = args.size() > 1 && args[1].type == Value::Type::kInt ? args[1].i : -1;
        if (sep && !sep->empty()) {
          size_t start = 0;
          while (true) {
            const size_t hit = s.find(*sep, start);
            if (hit == std::string::npos || max_split == 0) break;
            parts.push_back(Value::Str(s.substr(start, hit - start)));
            start = hit + sep->size();
            --max_split;
          }
          parts.push_back(Value::Str(s.substr(start)));
        } else {
          size_t k = 0;
          while (k < s.size()) {
            while (k < s.size() && IsWhitespace(s[k])) ++k;
            if (k >= s.size()) break;
            size_t j = k;
            while (j < s.size() && !IsWhitespace(s[j])) ++j;
            parts.push_back(Value::Str(s.substr(k, j - k)));
            k = j;
          }
        }
        return Value::MakeList(std::move(parts));
      }
      if (m == "replace" && arg_str(0) && arg_str(1))
        return Value::Str(Replace(s, *arg_str(0), *arg_str(1)));
      if (m == "find" && arg_str(0)) {
        const size_t hit = s.find(*arg_str(0));
        return Value::Int(hit == std::string::npos ? -1 : static_cast<int64_t>(hit));
      }
    } else if (obj.type == Value::Type::kDict) {
      if (m == "items" || m == "keys" || m == "values") {
        List l;
        for (const auto& [k, v] : *obj.dict) {
          if (m == "items")
            l.push_back(Value::MakeList({Value::Str(k), v}));
          else if (m == "keys")
            l.push_back(Value::Str(k));
          else
            l.push_back(v);
        }
        return Value::MakeList(std::move(l));
      }
      if (m == "get" && !args.empty() && args[0].type == Value::Type::kString) {
        if (const Value* v = obj.Find(args[0].str())) return *v;
        return args.size() > 1 ? args[1] : Value::None();
      }
    }
    return Error(pos, absl::StrCat("unsupported method '", m, "' on ", Repr(obj)));
  }

  static std::string Replace(const std::string& s, const std::string& from, const std::string& to) {
    if (from.empty()) return s;
    std::string out;
    size_t start = 0;
    while (true) {
      const size_t hit = s.find(from, start);
      if (hit == std::string::npos) break;
      out += s.substr(start, hit - start) + to;
      start = hit + from.size();
    }
    return out + s.substr(start);
  }

  absl::StatusOr<Value> EvalFilter(const Expr& e) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 0));
    const Value& v = args[0];
    const std::string& f = e.name;
    auto need_string = [&]() -> absl::Status {
      if (v.type != Value::Type::kString) {
        return Error(e.pos, absl::StrCat("filter '", f, "' expects a string, got ", Repr(v)));
      }
      return absl::OkStatus();
    };
    if (f == "trim") {
      if (v.is_undefined()) return Value::Str("");
      TANDEM_RETURN_IF_ERROR(need_string());
      return Value::Str(Strip(v.str(), nullptr, true, true));
    }
    if (f == "length" || f == "count") return Length(v, e.pos);
    if (f == "upper" || f == "lower") {
      TANDEM_RETURN_IF_ERROR(need_string());
      return CallMethod(v, f, {}, e.pos);
    }
    if (f == "title" || f == "capitalize") {
      TANDEM_RETURN_IF_ERROR(need_string());
      return CallMethod(v, f, {}, e.pos);
    }
    if (f == "string") return Value::Str(ToString(v));
    if (f == "safe") return v;
    if (f == "escape" || f == "e") {
      std::string out;
      for (char c : ToString(v)) {
        switch (c) {
          case '&':
            out += "&amp;";
            break;
          case '<':
            out += "&lt;";
            break;
          case '>':
            out += "&gt;";
            break;
          case '"':
            out += "&#34;";
            break;
          case '\'':
            out += "&#39;";
            break;
          default:
            out.push_back(c);
        }
      }
      return Value::Str(std::move(out));
    }
    if (f == "tojson") {
      TANDEM_ASSIGN_OR_RETURN(Value indent, Kwarg(e, "indent"));
      if (indent.is_undefined() && args.size() > 1) indent = args[1];
      std::string out;
      ToJson(v,
             indent.type == Value::Type::kInt
                 ? static_cast<int>(std::clamp<int64_t>(indent.i, 0, 64))
                 : -1,
             0, &out);
      return Value::Str(std::move(out));
    }
    if (f == "default" || f == "d") {
      TANDEM_ASSIGN_OR_RETURN(Value boolean, Kwarg(e, "boolean"));
      if (boolean.is_undefined() && args.size() > 2) boolean = args[2];
      const bool use_default = Truthy(boolean) ? !Truthy(v) : v.is_undefined();
      if (!use_default) return v;
      return args.size() > 1 ? args[1] : Value::Str("");
    }
    if (f == "join") {
      TANDEM_ASSIGN_OR_RETURN(List items, Iterate(v, e.pos));
      const std::string sep = args.size() > 1 ? ToString(args[1]) : "";
      std::string out;
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += sep;
        out += ToString(items[k]);
      }
      return Value::Str(std::move(out));
    }
    if (f == "items") {
      if (v.type != Value::Type::kDict) return Error(e.pos, "filter 'items' expects a mapping");
      return CallMethod(v, "items", {}, e.pos);
    }
    if (f == "list") {
      TANDEM_ASSIGN_OR_RETURN(List items, Iterate(v, e.pos));
      return Value::MakeList(std::move(items));
    }
    if (f == "first" || f == "last") {
      TANDEM_ASSIGN_OR_RETURN(List items, Iterate(v, e.pos));
      if (items.empty()) return Value{};
      return f == "first" ? items.front() : items.back();
    }
    if (f == "reverse") {
      if (v.type == Value::Type::kString)
        return Value::Str(std::string(v.str().rbegin(), v.str().rend()));
      TANDEM_ASSIGN_OR_RETURN(List items, Iterate(v, e.pos));
      std::reverse(items.begin(), items.end());
      return Value::MakeList(std::move(items));
    }
    if (f == "select" || f == "reject" || f == "selectattr" || f == "rejectattr" || f == "map") {
      return SelectOrMap(e, args);
    }
    if (f == "int") {
      if (v.type == Value::Type::kInt) return v;
      if (v.type == Value::Type::kFloat) return Value::Int(static_cast<int64_t>(v.f));
      if (v.type == Value::Type::kBool) return Value::Int(v.b);
      if (v.type == Value::Type::kString)
        return Value::Int(std::strtoll(v.str().c_str(), nullptr, 10));
      return Value::Int(0);
    }
    if (f == "float") {
      if (v.is_number()) return Value::Float(v.number());
      if (v.type == Value::Type::kString)
        return Value::Float(std::strtod(v.str().c_str(), nullptr));
      return Value::Float(0);
    }
    if (f == "abs") {
      if (v.type == Value::Type::kInt) return Value::Int(v.i < 0 ? -v.i : v.i);
      if (v.type == Value::Type::kFloat) return Value::Float(std::fabs(v.f));
      return Error(e.pos, "filter 'abs' expects a number");
    }
    if (f == "round") {
      if (!v.is_number()) return Error(e.pos, "filter 'round' expects a number");
      const int64_t digits = args.size() > 1 && args[1].type == Value::Type::kInt ? args[1].i : 0;
      const double scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(digits, 0, 15)));
      return Value::Float(std::round(v.number() * scale) / scale);
    }
    if (f == "replace") {
      TANDEM_RETURN_IF_ERROR(need_string());
      if (args.size() < 3) return Error(e.pos, "filter 'replace' takes two arguments");
      return Value::Str(Replace(v.str(), ToString(args[1]), ToString(args[2])));
    }
    if (f == "indent") {
      TANDEM_RETURN_IF_ERROR(need_string());
      const int64_t width = args.size() > 1 && args[1].type == Value::Type::kInt ? args[1].i : 4;
      const std::string pad(static_cast<size_t>(std::clamp<int64_t>(width, 0, 256)), ' ');
      std::string out;
      for (char c : v.str()) {
        out.push_back(c);
        if (c == '\n') out += pad;
      }
      return Value::Str(std::move(out));
    }
    if (f == "wordcount") {
      TANDEM_RETURN_IF_ERROR(need_string());
      TANDEM_ASSIGN_OR_RETURN(Value words, CallMethod(v, "split", {}, e.pos));
      return Value::Int(static_cast<int64_t>(words.list->size()));
    }
    if (f == "unique" || f == "sort" || f == "max" || f == "min" || f == "sum" || f == "dictsort") {
      TANDEM_ASSIGN_OR_RETURN(List items, Iterate(v, e.pos));
      if (f == "dictsort") {
        if (v.type != Value::Type::kDict)
          return Error(e.pos, "filter 'dictsort' expects a mapping");
        TANDEM_ASSIGN_OR_RETURN(Value pairs, CallMethod(v, "items", {}, e.pos));
        items = *pairs.list;
      }
      if (f == "unique") {
        List out;
        for (const Value& x : items) {
          if (std::none_of(out.begin(), out.end(), [&](const Value& y) { return Equal(x, y); })) {
            out.push_back(x);
          }
        }
        return Value::MakeList(std::move(out));
      }
      if (f == "sum") {
        Value total = Value::Int(0);
        for (const Value& x : items) {
          if (!x.is_number()) return Error(e.pos, "filter 'sum' expects numbers");
          total = total.type == Value::Type::kInt && x.type == Value::Type::kInt
                      ? Value::Int(total.i + x.i)
                      : Value::Float(total.number() + x.number());
        }
        return total;
      }
      absl::Status error;
      auto less = [&](const Value& a, const Value& b) {
        const Value& ka = f == "dictsort" ? (*a.list)[0] : a;
        const Value& kb = f == "dictsort" ? (*b.list)[0] : b;
        auto r = Less(ka, kb, e.pos);
        if (!r.ok()) {
          error = r.status();
          return false;
        }
        return *r;
      };
      // Comparisons of mixed types fail; check every pair a sort could meet first.
      for (size_t k = 1; k < items.size(); ++k) {
        TANDEM_RETURN_IF_ERROR(Less(f == "dictsort" ? (*items[0].list)[0] : items[0],
                                    f == "dictsort" ? (*items[k].list)[0] : items[k], e.pos)
                                   .status());
      }
      if (f == "max" || f == "min") {
        if (items.empty()) return Value{};
        return f == "max" ? *std::max_element(items.begin(), items.end(), less)
                          : *std::min_element(items.begin(), items.end(), less);
      }
      std::stable_sort(items.begin(), items.end(), less);
      TANDEM_RETURN_IF_ERROR(error);
      return Value::MakeList(std::move(items));
    }
    return Error(e.pos, absl::StrCat("unsupported filter '", f, "'"));
  }

  absl::StatusOr<Value> SelectOrMap(const Expr& e, const std::vector<Value>& args) {
    const std::string& f = e.name;
    TANDEM_ASSIGN_OR_RETURN(List items, Iterate(args[0], e.pos));
    if (f == "map") {
      TANDEM_ASSIGN_OR_RETURN(Value attribute, Kwarg(e, "attribute"));
      if (attribute.type != Value::Type::kString) {
        return Error(e.pos, "filter 'map' is supported only as map(attribute='name')");
      }
      TANDEM_ASSIGN_OR_RETURN(Value fallback, Kwarg(e, "default"));
      List out;
      for (const Value& item : items) {
        const Value* v = item.Find(attribute.str());
        out.push_back(v ? *v : fallback);
      }
      return Value::MakeList(std::move(out));
    }
    const bool by_attr = f == "selectattr" || f == "rejectattr";
    const bool keep_if = f == "select" || f == "selectattr";
    size_t k = 1;
    std::string attr;
    if (by_attr) {
      if (args.size() < 2 || args[1].type != Value::Type::kString) {
        return Error(e.pos, absl::StrCat("filter '", f, "' needs an attribute name"));
      }
      attr = args[1].str();
      k = 2;
    }
    std::string test = "truthy";
    if (k < args.size()) {
      if (args[k].type != Value::Type::kString || !OneOf(args[k].str(), kTests)) {
        return Error(e.pos, absl::StrCat("filter '", f, "': unsupported test ", Repr(args[k])));
      }
      test = args[k].str();
    }
    std::vector<Value> test_args(args.begin() + std::min(args.size(), k + 1), args.end());
    List out;
    for (const Value& item : items) {
      Value subject = item;
      if (by_attr) {
        const Value* v = item.Find(attr);
        subject = v ? *v : Value{};
      }
      bool r;
      if (test == "truthy") {
        r = Truthy(subject);
      } else {
        TANDEM_ASSIGN_OR_RETURN(r, ApplyTest(test, subject, test_args, e.pos));
      }
      if (r == keep_if) out.push_back(item);
    }
    return Value::MakeList(std::move(out));
  }

  absl::StatusOr<bool> EvalTest(const Expr& e) {
    TANDEM_ASSIGN_OR_RETURN(std::vector<Value> args, EvalArgs(e, 0));
    const Value subject = args[0];
    args.erase(args.begin());
    return ApplyTest(e.name, subject, args, e.pos);
  }

  absl::StatusOr<bool> ApplyTest(const std::string& t, const Value& v,
                                 const std::vector<Value>& args, size_t pos) {
    using T = Value::Type;
    if (t == "defined") return !v.is_undefined();
    if (t == "undefined") return v.is_undefined();
    if (t == "none") return v.type == T::kNone;
    if (t == "string") return v.type == T::kString;
    if (t == "number") return v.is_number();
    if (t == "integer") return v.type == T::kInt;
    if (t == "float") return v.type == T::kFloat;
    if (t == "boolean") return v.type == T::kBool;
    if (t == "true") return v.type == T::kBool && v.b;
    if (t == "false") return v.type == T::kBool && !v.b;
    if (t == "mapping") return v.type == T::kDict;
    if (t == "iterable") return v.type == T::kList || v.type == T::kDict || v.type == T::kString;
    if (t == "sequence") return v.type == T::kList || v.type == T::kString || v.type == T::kDict;
    if (t == "callable") return false;
    if (t == "lower" || t == "upper") {
      if (v.type != T::kString) return false;
      for (char c : v.str()) {
        if (t == "lower" ? std::isupper(static_cast<unsigned char>(c))
                         : std::islower(static_cast<unsigned char>(c)))
          return false;
      }
      return true;
    }
    if (t == "odd" || t == "even") {
      if (v.type != T::kInt) return Error(pos, absl::StrCat("test '", t, "' expects an integer"));
      return (v.i % 2 != 0) == (t == "odd");
    }
    if (args.empty()) return Error(pos, absl::StrCat("test '", t, "' needs an argument"));
    const Value& a = args[0];
    if (t == "equalto" || t == "eq" || t == "==" || t == "sameas") return Equal(v, a);
    if (t == "ne" || t == "!=") return !Equal(v, a);
    if (t == "in") {
      TANDEM_ASSIGN_OR_RETURN(Value r, Contains(a, v, pos));
      return r.b;
    }
    if (t == "gt" || t == "lt" || t == "ge" || t == "le") {
      TANDEM_ASSIGN_OR_RETURN(bool lt, Less(v, a, pos));
      TANDEM_ASSIGN_OR_RETURN(bool gt, Less(a, v, pos));
      if (t == "gt") return gt;
      if (t == "lt") return lt;
      if (t == "ge") return !lt;
      return !gt;
    }
    if (t == "divisibleby") {
      if (v.type != T::kInt) return Error(pos, absl::StrCat("test '", t, "' expects an integer"));
      if (a.type != T::kInt || a.i == 0) return Error(pos, "divisibleby needs a non-zero integer");
      return v.i % a.i == 0;
    }
    return Error(pos, absl::StrCat("unsupported test '", t, "'"));
  }

  absl::StatusOr<bool> Less(const Value& a, const Value& b, size_t pos) {
    if (a.is_number() && b.is_number()) return a.number() < b.number();
    if (a.type == Value::Type::kString && b.type == Value::Type::kString) return a.str() < b.str();
    return Error(pos, absl::StrCat("cannot compare ", Repr(a), " and ", Repr(b)));
  }

  absl::StatusOr<Value> Contains(const Value& container, const Value& item, size_t pos) {
    switch (container.type) {
      case Value::Type::kString:
        if (item.type != Value::Type::kString) return Error(pos, "'in <string>' needs a string");
        return Value::Bool(container.str().find(item.str()) != std::string::npos);
      case Value::Type::kList:
        for (const Value& x : *container.list) {
          if (Equal(x, item)) return Value::Bool(true);
        }
        return Value::Bool(false);
      case Value::Type::kDict:
        return Value::Bool(item.type == Value::Type::kString && container.Find(item.str()));
      case Value::Type::kUndefined:
        return Value::Bool(false);
      default:
        return Error(pos,
                     absl::StrCat("'in' needs a string, list or mapping, got ", Repr(container)));
    }
  }

  absl::StatusOr<Value> EvalCompare(const Expr& e) {
    TANDEM_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
    TANDEM_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
    const std::string& op = e.name;
    if (op == "==") return Value::Bool(Equal(a, b));
    if (op == "!=") return Value::Bool(!Equal(a, b));
    if (op == "in" || op == "not in") {
      TANDEM_ASSIGN_OR_RETURN(Value r, Contains(b, a, e.pos));
      return Value::Bool(r.b == (op == "in"));
    }
    TANDEM_ASSIGN_OR_RETURN(bool lt, Less(a, b, e.pos));
    TANDEM_ASSIGN_OR_RETURN(bool gt, Less(b, a, e.pos));
    if (op == "<") return Value::Bool(lt);
    if (op == ">") return Value::Bool(gt);
    if (op == "<=") return Value::Bool(!gt);
    return Value::Bool(!lt);
  }

  absl::StatusOr<Value> EvalBinary(const Expr& e) {
    TANDEM_ASSIGN_OR_RETURN(Value a, Eval(*e.args[0]));
    TANDEM_ASSIGN_OR_RETURN(Value b, Eval(*e.args[1]));
    const std::string& op = e.name;
    using T = Value::Type;
    auto too_long = [&](size_t n) { return static_cast<int64_t>(n) > max_output_; };
    if (op == "~" || (op == "+" && a.type == T::kString && b.type == T::kString)) {
      std::string r = ToString(a) + ToString(b);
      if (too_long(r.size())) return Error(e.pos, "string too long");
      return Value::Str(std::move(r));
    }
    if (op == "+") {
      if (a.type == T::kList && b.type == T::kList) {
        if (too_long(a.list->size() + b.list->size())) return Error(e.pos, "list too long");
        List l = *a.list;
        l.insert(l.end(), b.list->begin(), b.list->end());
        return Value::MakeList(std::move(l));
      }
    }
    if (op == "*" && ((a.type == T::kString && b.type == T::kInt) ||
                      (a.type == T::kInt && b.type == T::kString))) {
      const std::string& s = a.type == T::kString ? a.str() : b.str();
      const int64_t n = a.type == T::kInt ? a.i : b.i;
      if (n > 0 && !s.empty() && n > max_output_ / static_cast<int64_t>(s.size())) {
        return Error(e.pos, "string repetition too long");
      }
      std::string out;
      for (int64_t k = 0; k < n; ++k) out += s;
      return Value::Str(std::move(out));
    }
    if (!a.is_number() || !b.is_number()) {
      return Error(e.pos, absl::StrCat("unsupported operand types for '", op, "': ", Repr(a),
                                       " and ", Repr(b)));
    }
    const bool ints = a.type == T::kInt && b.type == T::kInt;
    if (op == "+") return ints ? Value::Int(a.i + b.i) : Value::Float(a.number() + b.number());
    if (op == "-") return ints ? Value::Int(a.i - b.i) : Value::Float(a.number() - b.number());
    if (op == "*") return ints ? Value::Int(a.i * b.i) : Value::Float(a.number() * b.number());
    if (op == "/") {
      if (b.number() == 0) return Error(e.pos, "division by zero");
      return Value::Float(a.number() / b.number());
    }
    if (op == "//" || op == "%") {
      if (b.number() == 0) return Error(e.pos, "division by zero");
      if (ints) {
        if (b.i == -1 && a.i == INT64_MIN) return Error(e.pos, "integer overflow");
        int64_t q = a.i / b.i, r = a.i % b.i;
        if (r != 0 && ((r < 0) != (b.i < 0))) {
          --q;
          r += b.i;
        }
        return Value::Int(op == "//" ? q : r);
      }
      const double q = std::floor(a.number() / b.number());
      return Value::Float(op == "//" ? q : a.number() - q * b.number());
    }
    if (op == "**") {
      if (ints && b.i >= 0 && b.i < 64) {
        int64_t r = 1;
        for (int64_t k = 0; k < b.i; ++k) r *= a.i;
        return Value::Int(r);
      }
      return Value::Float(std::pow(a.number(), b.number()));
    }
    return Error(e.pos, absl::StrCat("unsupported operator '", op, "'"));
  }

  Position where_;
  int64_t max_steps_;
  int64_t max_output_;
  int64_t steps_ = 0;
  std::vector<Dict> scopes_;
  std::string out_;
};

}  // namespace
}  // namespace jinja

absl::StatusOr<ChatTemplate> ChatTemplate::Parse(std::string_view source) {
  auto program = std::make_shared<jinja::Program>();
  program->source = std::string(source);
  jinja::Position where(program->source);
  TANDEM_ASSIGN_OR_RETURN(std::vector<jinja::Token> tokens, jinja::Lex(program->source, where));
  jinja::Parser parser(std::move(tokens), where);
  TANDEM_ASSIGN_OR_RETURN(program->body, parser.ParseTemplate());
  ChatTemplate t;
  t.program_ = std::move(program);
  return t;
}

const std::string& ChatTemplate::source() const { return program_->source; }

absl::StatusOr<std::string> ChatTemplate::RenderWithContext(const nlohmann::json& context) const {
  if (!context.is_object()) {
    return absl::InvalidArgumentError("chat template context must be a JSON object");
  }
  jinja::Dict globals;
  for (auto it = context.begin(); it != context.end(); ++it) {
    globals.emplace_back(it.key(), jinja::FromJson(it.value()));
  }
  jinja::Interpreter interpreter(*program_, max_steps_, max_output_bytes_);
  return interpreter.Run(program_->body, std::move(globals));
}

absl::StatusOr<std::string> ChatTemplate::Render(const std::vector<ChatMessage>& messages,
                                                 bool add_generation_prompt,
                                                 std::string_view bos_token,
                                                 std::string_view eos_token,
                                                 const nlohmann::json& extra) const {
  nlohmann::json context = extra.is_object() ? extra : nlohmann::json::object();
  nlohmann::json list = nlohmann::json::array();
  for (const ChatMessage& m : messages) list.push_back({{"role", m.role}, {"content", m.content}});
  context["messages"] = std::move(list);
  context["add_generation_prompt"] = add_generation_prompt;
  context["bos_token"] = std::string(bos_token);
  context["eos_token"] = std::string(eos_token);
  try {
    return RenderWithContext(context);
  } catch (const nlohmann::json::exception& e) {
    // Invalid UTF-8 in messages is kept as bytes by our JSON building; this is a safety net.
    return absl::InvalidArgumentError(absl::StrCat("chat template context: ", e.what()));
  }
}

namespace {

struct Builtin {
  const char* name;
  const char* source;
};

// The templates the model families ship (see tests/tokenizer/chat_templates for their origin).
const Builtin kBuiltins[] = {
    {"chatml",
     "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ "
     "'<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif "
     "%}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif "
     "%}"},
    {"llama3",
     "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
     "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
     "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
     "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
     "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"},
    {"llama2",
     "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
     "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% "
     "set system_message = false %}{% endif %}{% for message in loop_messages %}{% if "
     "(message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation "
     "roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == "
     "0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
     "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] "
     "%}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() "
     "+ ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
     "eos_token }}{% endif %}{% endfor %}"},
    {"mistral",
     "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
     "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ "
     "'[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ "
     "message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
     "assistant roles are supported!') }}{% endif %}{% endfor %}"},
    {"gemma",
     "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role "
     "not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
     "'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
     "user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') "
     "%}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ "
     "'<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}{% "
     "endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}"},
    {"phi3",
     "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\\n' + "
     "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\\n' + "
     "message['content'] + '<|end|>\\n'}}{% elif message['role'] == 'assistant' "
     "%}{{'<|assistant|>\\n' + message['content'] + '<|end|>\\n'}}{% endif %}{% endfor %}{% if "
     "add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"},
};

}  // namespace

std::vector<std::string> BuiltinChatTemplateNames() {
  std::vector<std::string> names;
  for (const Builtin& b : kBuiltins) names.push_back(b.name);
  return names;
}

absl::StatusOr<std::string> BuiltinChatTemplate(std::string_view name) {
  for (const Builtin& b : kBuiltins) {
    if (name == b.name) return std::string(b.source);
  }
  return absl::NotFoundError(
      absl::StrCat("no built-in chat template named '", std::string(name),
                   "'; built-in: ", absl::StrJoin(BuiltinChatTemplateNames(), ", ")));
}

absl::StatusOr<ChatTemplate> SelectChatTemplate(std::string_view model_template,
                                                std::string_view override_template) {
  const std::string hint =
      absl::StrCat("; pass --chat-template with one of ",
                   absl::StrJoin(BuiltinChatTemplateNames(), ", "), " or a Jinja template");
  if (!override_template.empty()) {
    std::string source(override_template);
    // A bare word is a built-in's name; anything with template syntax is the template itself.
    if (source.find_first_of("{}% \n") == std::string::npos) {
      TANDEM_ASSIGN_OR_RETURN(source, BuiltinChatTemplate(source));
    }
    auto t = ChatTemplate::Parse(source);
    if (!t.ok()) return Annotate(t.status(), "--chat-template");
    return t;
  }
  if (model_template.empty()) {
    return absl::NotFoundError(absl::StrCat("the model carries no chat template", hint));
  }
  auto t = ChatTemplate::Parse(model_template);
  if (!t.ok()) {
    return absl::Status(
        t.status().code(),
        absl::StrCat("the model's chat template is not supported: ", t.status().message(), hint));
  }
  return t;
}

}  // namespace tandem::model
