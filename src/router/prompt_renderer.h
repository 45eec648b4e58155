// PromptRenderer: turns an OpenAI request's prompts or chat messages into the token ids the
// workers run, with the model's own tokenizer and chat template, and names the model the router
// serves. The model is read for its vocabulary and config only; no weights are touched.
//
//   TANDEM_ASSIGN_OR_RETURN(auto renderer, PromptRenderer::Create("models/demo.gguf", ""));
//   TANDEM_ASSIGN_OR_RETURN(std::vector<std::vector<int32_t>> prompts,
//                           renderer->Render(api_request));
//
// Thread-safety: immutable after Create; Render may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"
#include "router/openai_api.h"

namespace tandem::router {

class PromptRenderer {
 public:
  // `model_reference`: a GGUF file, a Hugging Face folder or random:<preset>[:...] (the demo
  // vocabulary of that shape). `chat_template_override`: a built-in template name or Jinja
  // source; empty uses the model's own.
  static absl::StatusOr<std::unique_ptr<PromptRenderer>> Create(
      const std::string& model_reference, const std::string& chat_template_override);

  // One token sequence per prompt (completions) or the rendered conversation (chat).
  // kInvalidArgument for empty prompts, unknown token ids, a chat model without a template.
  absl::StatusOr<std::vector<std::vector<int32_t>>> Render(const ApiRequest& request) const;

  // The model's name for clients ("demo" for models/demo.gguf, "random-tiny" for random:tiny).
  const std::string& default_model_name() const { return default_name_; }
  // True when `name` designates this model: the served name, the reference itself or its name.
  bool Matches(std::string_view name, std::string_view served_name) const;
  int64_t context_length() const { return context_length_; }
  const model::Tokenizer& tokenizer() const { return *tokenizer_; }
  // Token ids that end generation (EOS and end-of-turn) unless a request ignores them.
  const std::vector<int32_t>& stop_token_ids() const { return stop_ids_; }

 private:
  PromptRenderer() = default;

  std::string reference_;
  std::string default_name_;
  int64_t context_length_ = 0;
  std::unique_ptr<model::Tokenizer> tokenizer_;
  std::optional<model::ChatTemplate> chat_template_;
  std::string chat_template_error_;
  std::vector<int32_t> stop_ids_;
};

}  // namespace tandem::router
