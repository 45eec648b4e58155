#include "model/vocab.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "model/bpe_trainer.h"
#include "model/internal/text.h"
#include "model/unicode.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

using internal::kLlama3Regex;
using internal::kQwen2Regex;

constexpr int32_t kMaxDemoVocab = 1 << 20;

// The Qwen2 ChatML template, with its default system prompt.
constexpr char kChatMlTemplate[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

std::string ByteLevelText(std::string_view bytes) {
  std::string out;
  for (char c : bytes) AppendUtf8(ByteToUnicode(static_cast<uint8_t>(c)), &out);
  return out;
}

absl::StatusOr<VocabSpec> TrainDemoVocab(int32_t vocab_size) {
  static const char* const kSpecial[] = {"<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>",
                                         "<|im_end|>"};
  constexpr int32_t kNumSpecial = 4;
  if (vocab_size < 256 + kNumSpecial || vocab_size > kMaxDemoVocab) {
    return absl::InvalidArgumentError(absl::StrCat("demo vocabulary size ", vocab_size,
                                                   " is out of range: expected 260 (256 ",
                                                   "bytes + 4 special tokens) to ", kMaxDemoVocab));
  }
  const std::string corpus = DemoTrainingCorpus();
  BpeTrainResult trained =
      TrainByteLevelBpe(corpus, PreTokenizer::kLlama3, vocab_size - kNumSpecial);
  VocabSpec v;
  v.kind = VocabSpec::Kind::kByteLevelBpe;
  v.pre_tokenizer = "llama-bpe";
  for (const std::string& t : trained.tokens) {
    v.tokens.push_back(ByteLevelText(t));
    v.token_types.push_back(1);
  }
  for (const auto& [l, r] : trained.merges) {
    v.merges.push_back(absl::StrCat(v.tokens[l], " ", v.tokens[r]));
  }
  // The corpus runs out of frequent pairs before large vocabularies fill up: the rest are
  // reserved control tokens, as in Llama-3's vocabulary.
  for (int32_t i = 0; static_cast<int32_t>(v.tokens.size()) < vocab_size - kNumSpecial; ++i) {
    v.tokens.push_back(absl::StrCat("<|reserved_special_token_", i, "|>"));
    v.token_types.push_back(3);
  }
  const int32_t first_special = static_cast<int32_t>(v.tokens.size());
  for (const char* s : kSpecial) {
    v.tokens.push_back(s);
    v.token_types.push_back(3);
  }
  v.bos_id = first_special;
  v.eos_id = first_special + 1;
  v.extra_eos_ids = {first_special + 3};  // <|im_end|> ends a chat turn
  v.add_bos = true;
  v.chat_template = kChatMlTemplate;
  return v;
}

bool IsSpecialType(int32_t type) { return type == 3 || type == 4 || type == 2; }

int32_t TypeOf(const VocabSpec& v, size_t id) {
  return id < v.token_types.size() ? v.token_types[id] : 1;
}

// SentencePiece vocabularies have scores, tokenizer.json wants merges: every split of a token
// into two tokens is a merge, ranked by the merged token's score (what Hugging Face's own
// converter does).
std::vector<std::string> MergesFromScores(const VocabSpec& v) {
  absl::flat_hash_map<std::string_view, int32_t> ids;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (TypeOf(v, i) == 1) ids.emplace(v.tokens[i], static_cast<int32_t>(i));
  }
  struct Merge {
    float score;
    int32_t left, right;
  };
  std::vector<Merge> merges;
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    if (TypeOf(v, i) != 1) continue;
    const std::string& t = v.tokens[i];
    size_t pos = 0, len;
    while (pos < t.size()) {
      DecodeUtf8(t, pos, &len);
      pos += len;
      if (pos >= t.size()) break;
      auto l = ids.find(std::string_view(t).substr(0, pos));
      auto r = ids.find(std::string_view(t).substr(pos));
      if (l != ids.end() && r != ids.end()) {
        merges.push_back({i < v.scores.size() ? v.scores[i] : 0.0f, l->second, r->second});
      }
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.left != b.left) return a.left < b.left;
    return a.right < b.right;
  });
  std::vector<std::string> out;
  out.reserve(merges.size());
  for (const Merge& m : merges)
    out.push_back(absl::StrCat(v.tokens[m.left], " ", v.tokens[m.right]));
  return out;
}

std::string TokenOrEmpty(const VocabSpec& v, int32_t id) {
  return id >= 0 && id < static_cast<int32_t>(v.tokens.size()) ? v.tokens[id] : "";
}

}  // namespace

absl::StatusOr<VocabSpec> DemoVocab(int32_t vocab_size) {
  static absl::Mutex mu;
  static auto* cache = new std::map<int32_t, VocabSpec>();
  absl::MutexLock lock(&mu);
  if (auto it = cache->find(vocab_size); it != cache->end()) return it->second;
  auto v = TrainDemoVocab(vocab_size);
  if (v.ok()) cache->emplace(vocab_size, *v);
  return v;
}

std::string VocabToTokenizerJson(const VocabSpec& v) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  ordered_json added = ordered_json::array();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t type = TypeOf(v, i);
    if (!IsSpecialType(type)) continue;
    added.push_back({{"id", i},
                     {"content", v.tokens[i]},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", type != 4}});
  }
  j["added_tokens"] = added;
  const bool byte_level = v.kind == VocabSpec::Kind::kByteLevelBpe;
  if (byte_level) {
    j["normalizer"] = nullptr;
    const std::string regex = v.pre_tokenizer == "qwen2" ? kQwen2Regex : kLlama3Regex;
    if (v.pre_tokenizer == "gpt2" || v.pre_tokenizer == "default" || v.pre_tokenizer.empty()) {
      j["pre_tokenizer"] = {{"type", "ByteLevel"},
                            {"add_prefix_space", false},
                            {"trim_offsets", true},
                            {"use_regex", true}};
    } else {
      j["pre_tokenizer"] = {{"type", "Sequence"},
                            {"pretokenizers", ordered_json::array({{{"type", "Split"},
                                                                    {"pattern", {{"Regex", regex}}},
                                                                    {"behavior", "Isolated"},
                                                                    {"invert", false}},
                                                                   {{"type", "ByteLevel"},
                                                                    {"add_prefix_space", false},
                                                                    {"trim_offsets", true},
                                                                    {"use_regex", false}}})}};
    }
  } else {
    j["normalizer"] = {
        {"type", "Sequence"},
        {"normalizers", ordered_json::array({{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                                             {{"type", "Replace"},
                                              {"pattern", {{"String", " "}}},
                                              {"content", "\xe2\x96\x81"}}})}};
    j["pre_tokenizer"] = nullptr;
  }
  if (v.add_bos && v.bos_id >= 0) {
    const std::string bos = TokenOrEmpty(v, v.bos_id);
    j["post_processor"] = {
        {"type", "TemplateProcessing"},
        {"single", ordered_json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
        {"pair", ordered_json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                      {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                                      {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}},
                                      {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}})},
        {"special_tokens",
         {{bos,
           {{"id", bos},
            {"ids", ordered_json::array({v.bos_id})},
            {"tokens", ordered_json::array({bos})}}}}}};
  } else {
    j["post_processor"] = nullptr;
  }
  if (byte_level) {
    j["decoder"] = {{"type", "ByteLevel"},
                    {"add_prefix_space", true},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  } else {
    j["decoder"] = {
        {"type", "Sequence"},
        {"decoders",
         ordered_json::array(
             {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}};
  }
  ordered_json model;
  model["type"] = "BPE";
  model["dropout"] = nullptr;
  model["unk_token"] = v.unk_id >= 0 ? ordered_json(TokenOrEmpty(v, v.unk_id)) : ordered_json();
  model["continuing_subword_prefix"] = nullptr;
  model["end_of_word_suffix"] = nullptr;
  model["fuse_unk"] = !byte_level;
  model["byte_fallback"] = !byte_level;
  model["ignore_merges"] = byte_level && v.pre_tokenizer == "llama-bpe";
  ordered_json vocab = ordered_json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) vocab[v.tokens[i]] = i;
  model["vocab"] = std::move(vocab);
  model["merges"] = byte_level ? v.merges : MergesFromScores(v);
  j["model"] = std::move(model);
  return j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string VocabToTokenizerConfigJson(const VocabSpec& v) {
  using nlohmann::ordered_json;
  ordered_json j;
  j["add_bos_token"] = v.add_bos;
  j["add_eos_token"] = false;
  ordered_json decoder = ordered_json::object();
  for (size_t i = 0; i < v.tokens.size(); ++i) {
    const int32_t type = TypeOf(v, i);
    if (!IsSpecialType(type)) continue;
    decoder[std::to_string(i)] = {{"content", v.tokens[i]}, {"lstrip", false},
                                  {"normalized", false},    {"rstrip", false},
                                  {"single_word", false},   {"special", type != 4}};
  }
  j["added_tokens_decoder"] = std::move(decoder);
  if (v.bos_id >= 0) j["bos_token"] = TokenOrEmpty(v, v.bos_id);
  if (v.eos_id >= 0) j["eos_token"] = TokenOrEmpty(v, v.eos_id);
  if (v.pad_id >= 0) j["pad_token"] = TokenOrEmpty(v, v.pad_id);
  if (v.unk_id >= 0) j["unk_token"] = TokenOrEmpty(v, v.unk_id);
  if (!v.extra_eos_ids.empty()) {
    ordered_json extra = ordered_json::array();
    for (int32_t id : v.extra_eos_ids) extra.push_back(TokenOrEmpty(v, id));
    // Not a Hugging Face key: Tandem reads it back to know every end-of-generation token.
    j["tandem_extra_eos_tokens"] = std::move(extra);
  }
  if (!v.chat_template.empty()) j["chat_template"] = v.chat_template;
  j["clean_up_tokenization_spaces"] = false;
  j["model_max_length"] = 131072;
  j["tokenizer_class"] = "PreTrainedTokenizerFast";
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace tandem::model
