// Tokenizer::VocabFromHuggingFaceJson: reads a Hugging Face tokenizer.json (and the optional
// tokenizer_config.json) into a VocabSpec, refusing what the tokenizers cannot reproduce.
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "model/internal/text.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

using internal::kGpt2Regex;
using internal::kLlama3Regex;
using internal::kQwen2Regex;
using internal::kSpaceMark;

using nlohmann::json;

absl::Status Bad(std::string_view source, std::string_view key, std::string_view what) {
  return absl::InvalidArgumentError(std::string(source) + ": " + std::string(key) + ": " +
                                    std::string(what));
}

// The string a special-token entry names: "<s>" or {"content": "<s>", ...}.
std::string TokenContent(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string()) {
    return j["content"].get<std::string>();
  }
  return "";
}

std::string TypeOf(const json& j) {
  if (j.is_object() && j.contains("type") && j["type"].is_string()) {
    return j["type"].get<std::string>();
  }
  return "";
}

// Collects the components of a possibly nested Sequence (pre-tokenizers, normalizers, decoders).
void Flatten(const json& j, const char* list_key, std::vector<const json*>* out) {
  if (j.is_null()) return;
  if (TypeOf(j) == "Sequence" && j.contains(list_key) && j[list_key].is_array()) {
    for (const json& item : j[list_key]) Flatten(item, list_key, out);
    return;
  }
  out->push_back(&j);
}

absl::StatusOr<VocabSpec> Parse(const json& root, const json* config, const std::string& source) {
  if (!root.is_object()) return Bad(source, "(root)", "expected a JSON object");
  if (!root.contains("model") || !root["model"].is_object()) {
    return Bad(source, "model", "expected an object describing the tokenizer model");
  }
  const json& model = root["model"];
  const std::string model_type = TypeOf(model);
  if (!model_type.empty() && model_type != "BPE") {
    return absl::UnimplementedError(
        absl::StrCat(source, ": model.type '", model_type, "' is not supported; supported: BPE"));
  }
  if (!model.contains("vocab") || !model["vocab"].is_object()) {
    return Bad(source, "model.vocab", "expected an object mapping token text to id");
  }
  const json& vocab_json = model["vocab"];
  const json* added = nullptr;
  if (root.contains("added_tokens") && !root["added_tokens"].is_null()) {
    if (!root["added_tokens"].is_array()) return Bad(source, "added_tokens", "expected an array");
    added = &root["added_tokens"];
  }
  const size_t entries = vocab_json.size() + (added ? added->size() : 0);
  const int64_t max_id = static_cast<int64_t>(2 * entries + 1024);

  VocabSpec v;
  std::vector<uint8_t> present;
  auto place = [&](int64_t id, const std::string& text, int32_t type,
                   std::string_view key) -> absl::Status {
    if (id < 0 || id > max_id || id >= (1 << 24)) {
      return Bad(source, key,
                 absl::StrCat("token '", text, "' has id ", id, "; expected 0 to ",
                              std::min<int64_t>(max_id, (1 << 24) - 1), " (ids must be dense)"));
    }
    if (static_cast<size_t>(id) >= v.tokens.size()) {
      v.tokens.resize(id + 1);
      v.token_types.resize(id + 1, 5);  // unused until a token claims the id
      present.resize(id + 1, 0);
    }
    if (present[id] && v.tokens[id] != text) {
      return Bad(source, key,
                 absl::StrCat("id ", id, " is given to both '", v.tokens[id], "' and '", text,
                              "'; expected one token per id"));
    }
    present[id] = 1;
    v.tokens[id] = text;
    v.token_types[id] = type;
    return absl::OkStatus();
  };
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    if (!it.value().is_number_integer()) {
      return Bad(source, absl::StrCat("model.vocab['", it.key(), "']"), "expected an integer id");
    }
    TANDEM_RETURN_IF_ERROR(place(it.value().get<int64_t>(), it.key(), 1, "model.vocab"));
  }
  if (added) {
    for (size_t i = 0; i < added->size(); ++i) {
      const json& a = (*added)[i];
      const std::string key = absl::StrCat("added_tokens[", i, "]");
      if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
          !a.contains("content") || !a["content"].is_string()) {
        return Bad(source, key, "expected an object with an integer 'id' and a string 'content'");
      }
      const bool special =
          a.contains("special") && a["special"].is_boolean() && a["special"].get<bool>();
      TANDEM_RETURN_IF_ERROR(
          place(a["id"].get<int64_t>(), a["content"].get<std::string>(), special ? 3 : 4, key));
    }
  }
  if (v.tokens.empty()) return Bad(source, "model.vocab", "expected at least one token");

  if (model.contains("merges") && !model["merges"].is_null()) {
    const json& merges = model["merges"];
    if (!merges.is_array()) return Bad(source, "model.merges", "expected an array");
    v.merges.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& m = merges[i];
      if (m.is_string()) {
        v.merges.push_back(m.get<std::string>());
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        v.merges.push_back(absl::StrCat(m[0].get<std::string>(), " ", m[1].get<std::string>()));
      } else {
        return Bad(source, absl::StrCat("model.merges[", i, "]"),
                   "expected \"left right\" or [\"left\", \"right\"]");
      }
    }
  }

  // Which algorithm: byte-level BPE has a ByteLevel pre-tokenizer or decoder; SentencePiece
  // style BPE falls back to bytes and spells spaces as U+2581.
  std::vector<const json*> pre, norm, dec;
  if (root.contains("pre_tokenizer")) Flatten(root["pre_tokenizer"], "pretokenizers", &pre);
  if (root.contains("normalizer")) Flatten(root["normalizer"], "normalizers", &norm);
  if (root.contains("decoder")) Flatten(root["decoder"], "decoders", &dec);
  bool byte_level = false;
  for (const json* p : pre) byte_level |= TypeOf(*p) == "ByteLevel";
  for (const json* d : dec) byte_level |= TypeOf(*d) == "ByteLevel";
  const bool byte_fallback = model.contains("byte_fallback") &&
                             model["byte_fallback"].is_boolean() &&
                             model["byte_fallback"].get<bool>();
  bool space_mark = false;
  for (const json* n : norm) {
    space_mark |= (TypeOf(*n) == "Replace" || TypeOf(*n) == "Prepend") &&
                  n->dump().find(kSpaceMark) != std::string::npos;
  }
  for (const json* p : pre) space_mark |= TypeOf(*p) == "Metaspace";

  if (byte_level) {
    v.kind = VocabSpec::Kind::kByteLevelBpe;
    for (const json* n : norm) {
      // NFC leaves text that is already composed unchanged, which is what tokenizers see in
      // practice; other normalizers change text and are refused.
      if (TypeOf(*n) != "NFC") {
        return absl::UnimplementedError(
            absl::StrCat(source, ": normalizer '", TypeOf(*n),
                         "' is not supported for byte-level BPE; supported: none, NFC"));
      }
    }
    v.pre_tokenizer = "gpt2";
    for (const json* p : pre) {
      const std::string type = TypeOf(*p);
      if (type == "ByteLevel") {
        const bool use_regex = !p->contains("use_regex") || !(*p)["use_regex"].is_boolean() ||
                               (*p)["use_regex"].get<bool>();
        if (use_regex && pre.size() > 1) {
          return absl::UnimplementedError(
              absl::StrCat(source,
                           ": pre_tokenizer: a Split regex and a ByteLevel regex together are not "
                           "supported"));
        }
        if (p->contains("add_prefix_space") && (*p)["add_prefix_space"].is_boolean() &&
            (*p)["add_prefix_space"].get<bool>()) {
          return absl::UnimplementedError(absl::StrCat(
              source, ": pre_tokenizer: ByteLevel add_prefix_space=true is not supported"));
        }
      } else if (type == "Split") {
        std::string regex;
        if (p->contains("pattern") && (*p)["pattern"].is_object() &&
            (*p)["pattern"].contains("Regex") && (*p)["pattern"]["Regex"].is_string()) {
          regex = (*p)["pattern"]["Regex"].get<std::string>();
        }
        if (regex == kLlama3Regex) {
          v.pre_tokenizer = "llama-bpe";
        } else if (regex == kQwen2Regex) {
          v.pre_tokenizer = "qwen2";
        } else if (regex == kGpt2Regex) {
          v.pre_tokenizer = "gpt2";
        } else {
          return absl::UnimplementedError(
              absl::StrCat(source, ": pre_tokenizer: Split pattern '", regex,
                           "' is not supported; supported: the GPT-2, Llama-3 and Qwen2 regexes"));
        }
      } else {
        return absl::UnimplementedError(absl::StrCat(source, ": pre_tokenizer type '", type,
                                                     "' is not supported; supported: "
                                                     "ByteLevel, Split"));
      }
    }
  } else if (byte_fallback || space_mark) {
    v.kind = VocabSpec::Kind::kSentencePiece;
    // Merge ranks become scores: the earlier a token is made, the higher its score. Tokens no
    // merge makes (other than single characters) must never be produced: score -inf.
    absl::flat_hash_map<std::string_view, int32_t> ids;
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.token_types[i] == 1) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
    }
    v.scores.assign(v.tokens.size(), -std::numeric_limits<float>::infinity());
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      size_t len;
      DecodeUtf8(v.tokens[i], 0, &len);
      if (v.token_types[i] == 1 && !v.tokens[i].empty() && len == v.tokens[i].size()) {
        v.scores[i] = 0.0f;
      }
      int b = -1;
      if (v.tokens[i].size() == 6 && v.tokens[i].rfind("<0x", 0) == 0) {
        b = static_cast<int>(std::strtol(v.tokens[i].c_str() + 3, nullptr, 16));
      }
      if (b >= 0 && v.token_types[i] == 1) v.token_types[i] = 6;
    }
    for (size_t rank = 0; rank < v.merges.size(); ++rank) {
      const std::string& m = v.merges[rank];
      const size_t space = m.find(' ', 1);
      if (space == std::string::npos) {
        return Bad(source, absl::StrCat("model.merges[", rank, "]"),
                   "expected two tokens separated by a space");
      }
      auto it = ids.find(m.substr(0, space) + m.substr(space + 1));
      if (it == ids.end()) {
        return Bad(source, absl::StrCat("model.merges[", rank, "]"),
                   absl::StrCat("the merged token of '", m, "' is not in the vocabulary"));
      }
      float& score = v.scores[it->second];
      if (!std::isfinite(score) || score == 0.0f) score = -1.0f - static_cast<float>(rank);
    }
    v.merges.clear();
  } else {
    return absl::UnimplementedError(absl::StrCat(
        source,
        ": tokenizer is neither byte-level BPE (a ByteLevel pre-tokenizer or decoder) nor "
        "SentencePiece-style BPE (byte_fallback or U+2581 spaces); those are the supported kinds"));
  }

  auto find_token = [&](const std::string& text) -> int32_t {
    if (text.empty()) return -1;
    for (size_t i = 0; i < v.tokens.size(); ++i) {
      if (v.tokens[i] == text) return static_cast<int32_t>(i);
    }
    return -1;
  };
  if (model.contains("unk_token")) v.unk_id = find_token(TokenContent(model["unk_token"]));
  if (v.kind == VocabSpec::Kind::kSentencePiece && v.unk_id >= 0) v.token_types[v.unk_id] = 2;

  // BOS: the config's bos_token and add_bos_token, else the post-processor's template.
  if (root.contains("post_processor") && TypeOf(root["post_processor"]) == "TemplateProcessing") {
    const json& pp = root["post_processor"];
    if (pp.contains("single") && pp["single"].is_array() && !pp["single"].empty()) {
      const json& first = pp["single"][0];
      if (first.is_object() && first.contains("SpecialToken") &&
          first["SpecialToken"].is_object() && first["SpecialToken"].contains("id")) {
        v.bos_id = find_token(TokenContent(first["SpecialToken"]["id"]));
        v.add_bos = v.bos_id >= 0;
      }
    }
  }
  if (config) {
    const json& c = *config;
    if (c.contains("bos_token")) {
      const int32_t id = find_token(TokenContent(c["bos_token"]));
      if (id >= 0) v.bos_id = id;
    }
    if (c.contains("add_bos_token") && c["add_bos_token"].is_boolean()) {
      v.add_bos = c["add_bos_token"].get<bool>() && v.bos_id >= 0;
    }
    if (c.contains("eos_token")) v.eos_id = find_token(TokenContent(c["eos_token"]));
    if (c.contains("pad_token")) v.pad_id = find_token(TokenContent(c["pad_token"]));
    if (c.contains("tandem_extra_eos_tokens") && c["tandem_extra_eos_tokens"].is_array()) {
      for (const json& e : c["tandem_extra_eos_tokens"]) {
        const int32_t id = find_token(TokenContent(e));
        if (id >= 0) v.extra_eos_ids.push_back(id);
      }
    }
    if (c.contains("chat_template")) {
      const json& t = c["chat_template"];
      if (t.is_string()) {
        v.chat_template = t.get<std::string>();
      } else if (t.is_array()) {
        // Named templates: take "default".
        for (const json& named : t) {
          if (named.is_object() && named.value("name", "") == "default" &&
              named.contains("template") && named["template"].is_string()) {
            v.chat_template = named["template"].get<std::string>();
          }
        }
      } else if (!t.is_null()) {
        return Bad("tokenizer_config.json", "chat_template", "expected a string");
      }
    }
  }
  if (v.kind == VocabSpec::Kind::kSentencePiece && v.bos_id < 0) v.bos_id = find_token("<s>");
  // Tokens that end a generation besides EOS, by their well-known names.
  for (const char* name : {"<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                           "<|endoftext|>", "<|end_of_text|>", "</s>"}) {
    const int32_t id = find_token(name);
    if (id < 0 || v.token_types[id] == 1) continue;
    if (v.eos_id < 0) {
      v.eos_id = id;
    } else if (id != v.eos_id && std::find(v.extra_eos_ids.begin(), v.extra_eos_ids.end(), id) ==
                                     v.extra_eos_ids.end()) {
      v.extra_eos_ids.push_back(id);
    }
  }
  return v;
}

}  // namespace

absl::StatusOr<VocabSpec> Tokenizer::VocabFromHuggingFaceJson(std::string_view tokenizer_json,
                                                              std::string_view config_json,
                                                              std::string_view source_name) {
  const std::string source(source_name);
  json root, config;
  try {
    root = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        source, ": not valid JSON (expected a Hugging Face tokenizer.json): ", e.what()));
  }
  if (!config_json.empty()) {
    try {
      config = json::parse(config_json);
    } catch (const json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer_config.json: not valid JSON: ", e.what()));
    }
    if (!config.is_object()) {
      return Bad("tokenizer_config.json", "(root)", "expected a JSON object");
    }
  }
  try {
    return Parse(root, config_json.empty() ? nullptr : &config, source);
  } catch (const json::exception& e) {
    // Every access above checks types first; this is a last line of defence.
    return absl::InvalidArgumentError(absl::StrCat(source, ": unexpected structure: ", e.what()));
  }
}

}  // namespace tandem::model
