// Tokenizer: text <-> token ids for the vocabularies real models carry.
//
// Two algorithms:
//   - byte-level BPE (GPT-2, Llama-3, Qwen2/3): the text is split by the model's pre-tokenizer
//     regex (implemented by hand, see unicode.h), each piece's bytes are merged by rank;
//     `ignore_merges` vocabularies (Llama-3) take a piece that is itself a token as is.
//   - SentencePiece-style BPE (Llama-2, Mistral v0.1 GGUF files, `tokenizer.ggml.model ==
//     "llama"`): spaces become U+2581, a space is prepended, characters merge by token score,
//     characters missing from the vocabulary fall back to `<0xXX>` byte tokens.
// Special tokens (control tokens such as <|im_start|>) are recognised in the text only when the
// caller asks (`parse_special`); user-defined added tokens always are.
//
// Built from a VocabSpec (GGUF metadata) or from a Hugging Face tokenizer.json (+ the optional
// tokenizer_config.json, which names the BOS/EOS tokens and carries the chat template).
//
//   TANDEM_ASSIGN_OR_RETURN(auto tok, Tokenizer::FromVocab(vocab));
//   std::vector<int32_t> ids = tok->Encode("Hello", /*add_special=*/true, /*parse_special=*/false);
//   std::string text = tok->Decode(ids);
//   StreamDecoder stream(*tok);
//   for (int32_t id : generated) Send(stream.Feed(id));  // only whole UTF-8 characters
//   Send(stream.Flush());
//
// Thread-safety: a Tokenizer is immutable after construction; all const methods may be called
// concurrently. A StreamDecoder belongs to one stream (not thread-safe).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "model/unicode.h"
#include "model/vocab.h"

namespace tandem::model {

class Tokenizer {
 public:
  // Not copyable: lookup tables point into the tokenizer's own token storage.
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // `vocab.pre_tokenizer` selects the split regex of byte-level vocabularies: "gpt2"/"default"
  // (GPT-2), "llama-bpe"/"llama3"/"smaug-bpe" (Llama-3, with ignore_merges), "qwen2"/"qwen3".
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromVocab(const VocabSpec& vocab);
  // `source` names the file in error messages.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromHuggingFaceJson(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json = "",
      std::string_view source = "tokenizer.json");
  // The VocabSpec a tokenizer.json describes (what FromHuggingFaceJson builds from).
  static absl::StatusOr<VocabSpec> VocabFromHuggingFaceJson(
      std::string_view tokenizer_json, std::string_view tokenizer_config_json = "",
      std::string_view source = "tokenizer.json");

  // `add_special` prepends BOS when the vocabulary asks for it; `parse_special` turns text such
  // as "<|im_start|>" into its control token instead of encoding its characters.
  std::vector<int32_t> Encode(std::string_view text, bool add_special, bool parse_special) const;
  // Concatenated token bytes (the result may be invalid UTF-8 for a partial sequence). Ids out
  // of range are skipped; control tokens are rendered as their text unless `skip_special`.
  std::string Decode(absl::Span<const int32_t> ids, bool skip_special = false) const;

  // The token as the vocabulary spells it (e.g. "Ġthe", "▁the", "<0x0A>"); "" when out of range.
  std::string_view TokenText(int32_t id) const;
  // The bytes the token stands for (e.g. " the").
  std::string_view TokenBytes(int32_t id) const;
  int32_t vocab_size() const { return static_cast<int32_t>(vocab_.tokens.size()); }
  int32_t bos_id() const { return vocab_.bos_id; }
  int32_t eos_id() const { return vocab_.eos_id; }
  // The end-of-turn token of chat models (<|eot_id|>, <|im_end|>, <end_of_turn>, <|end|>), or
  // eos_id() when the vocabulary has none.
  int32_t eot_id() const { return eot_id_; }
  bool add_bos() const { return vocab_.add_bos; }
  // True for EOS and every other end-of-generation token.
  bool IsEos(int32_t id) const;
  bool IsControl(int32_t id) const;
  VocabSpec::Kind kind() const { return vocab_.kind; }
  const std::string& chat_template() const { return vocab_.chat_template; }
  const VocabSpec& vocab() const { return vocab_; }
  // One line for `tandem model info`: kind, size, pre-tokenizer, special tokens.
  std::string Summary() const;

 private:
  friend class StreamDecoder;
  Tokenizer() = default;
  absl::Status Init(VocabSpec vocab);

  struct Fragment {
    std::string_view text;
    int32_t token = -1;  // >= 0: a special token matched in the text
  };
  void SplitSpecial(std::string_view text, bool parse_special, std::vector<Fragment>* out) const;
  void EncodeByteLevelPiece(std::string_view piece, std::vector<int32_t>* out) const;
  void EncodeSentencePiece(std::string_view text, std::vector<int32_t>* out) const;
  // Bytes of `id` for decoding; `*at_text_start` tracks where SentencePiece drops the space it
  // added in front of a text fragment.
  void AppendDecoded(int32_t id, bool skip_special, bool* at_text_start, std::string* out) const;

  VocabSpec vocab_;
  PreTokenizer pre_tokenizer_ = PreTokenizer::kGpt2;
  bool ignore_merges_ = false;
  bool add_space_prefix_ = true;
  std::vector<std::string> token_bytes_;
  std::vector<uint8_t> is_control_;
  std::vector<uint8_t> is_eos_;
  int32_t eot_id_ = -1;
  // Bytes (byte-level) or text (SentencePiece) -> id of the tokens the merge algorithms may
  // produce; the keys point into token_bytes_ / vocab_.tokens, which never change after Init.
  absl::flat_hash_map<std::string_view, int32_t> piece_ids_;
  int32_t byte_tokens_[256];
  // Byte-level BPE: (left, right) -> rank << 32 | merged id.
  absl::flat_hash_map<uint64_t, uint64_t> merges_;
  // Special and added tokens by first byte, longest first.
  struct Special {
    std::string text;
    int32_t id;
    bool control;
  };
  std::vector<std::vector<Special>> specials_by_byte_;
};

// Turns generated ids into text as they arrive, holding back bytes of an unfinished UTF-8
// character. The concatenation of every Feed() and the final Flush() equals
// Decode(all ids, skip_special).
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  std::string Feed(int32_t id);
  // Everything still held back (an incomplete character at the end of the stream).
  std::string Flush();

 private:
  const Tokenizer& tokenizer_;
  bool skip_special_;
  bool at_text_start_ = true;
  std::string pending_;
};

}  // namespace tandem::model
