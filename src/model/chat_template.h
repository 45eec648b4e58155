// ChatTemplate: renders the Jinja chat template a model carries (`tokenizer.chat_template` in
// GGUF, `chat_template` in tokenizer_config.json) into the prompt text the model was trained on.
//
// A small Jinja interpreter that covers what the templates of the major model families use
// (Llama-2/3/3.1, Mistral, Mixtral, Qwen2/2.5, Gemma, Phi-3, ChatML): text, {{ }}, {% if/elif/
// else %}, {% for %} (with loop.*, else, an inline if, tuple unpacking, break/continue),
// {% set %} (also ns.attr with namespace()), comments, whitespace control ({%- -%}) with the
// trim_blocks/lstrip_blocks settings Hugging Face renders with, Python-like expressions
// (arithmetic, ~, comparisons, in, is-tests, and/or/not, conditional expressions, literals,
// subscripts, slices), filters (trim, length, upper, lower, tojson, default, join, items, ...),
// string and dict methods (strip, split, startswith, items, get, ...), raise_exception().
// Anything else is refused at Parse() time with its line and column.
//
//   TANDEM_ASSIGN_OR_RETURN(ChatTemplate t, ChatTemplate::Parse(tokenizer.chat_template()));
//   TANDEM_ASSIGN_OR_RETURN(std::string prompt,
//       t.Render({{"system", "Be brief."}, {"user", "Hi"}}, /*add_generation_prompt=*/true,
//                "<|begin_of_text|>", "<|eot_id|>"));
//
// Rendering is bounded: a step limit and an output limit stop templates that loop without end.
// Thread-safety: a parsed ChatTemplate is immutable; Render may be called concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tandem::model {

struct ChatMessage {
  std::string role;
  std::string content;
};

namespace jinja {
struct Program;
}

class ChatTemplate {
 public:
  static absl::StatusOr<ChatTemplate> Parse(std::string_view source);

  // Renders with `messages`, `add_generation_prompt`, `bos_token`, `eos_token` and every key of
  // `extra` (e.g. "tools", "date_string") as template variables.
  absl::StatusOr<std::string> Render(const std::vector<ChatMessage>& messages,
                                     bool add_generation_prompt, std::string_view bos_token,
                                     std::string_view eos_token,
                                     const nlohmann::json& extra = nlohmann::json::object()) const;
  // Renders with the variables of a JSON object (messages may then carry tool calls etc.).
  absl::StatusOr<std::string> RenderWithContext(const nlohmann::json& context) const;

  // Bounds for one Render: evaluation steps and output bytes.
  void set_limits(int64_t max_steps, int64_t max_output_bytes) {
    max_steps_ = max_steps;
    max_output_bytes_ = max_output_bytes;
  }
  const std::string& source() const;

 private:
  ChatTemplate() = default;
  std::shared_ptr<const jinja::Program> program_;
  int64_t max_steps_ = 10'000'000;
  int64_t max_output_bytes_ = 64 << 20;
};

// Names of the templates Tandem ships for overriding a model's own ("chatml", "llama2",
// "llama3", "mistral", "gemma", "phi3").
std::vector<std::string> BuiltinChatTemplateNames();
// The source of a shipped template, or NotFound listing the names.
absl::StatusOr<std::string> BuiltinChatTemplate(std::string_view name);

// The template to use: `override_template` (what `--chat-template` gives: a built-in name or
// Jinja source) when not empty, else the model's own. Fails with a message that says how to
// override when the model has no template or its template cannot be parsed.
absl::StatusOr<ChatTemplate> SelectChatTemplate(std::string_view model_template,
                                                std::string_view override_template);

}  // namespace tandem::model
