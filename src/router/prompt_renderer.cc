#include "router/prompt_renderer.h"

#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "model/model.h"
#include "model/model_config.h"
#include "model/model_writer.h"
#include "model/vocab.h"

namespace tandem::router {

absl::StatusOr<std::unique_ptr<PromptRenderer>> PromptRenderer::Create(
    const std::string& model_reference, const std::string& chat_template_override) {
  std::unique_ptr<PromptRenderer> renderer(new PromptRenderer());
  renderer->reference_ = model_reference;
  std::string model_template;
  if (absl::StartsWith(model_reference, "random:")) {
    std::vector<std::string> parts = absl::StrSplit(model_reference, ':');
    if (parts.size() < 2 || parts.size() > 4 || parts[1].empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model reference '", model_reference,
                       "' is malformed; expected random:<shape>[:<dtype>[:<seed>]]"));
    }
    TANDEM_ASSIGN_OR_RETURN(model::ModelConfig config, model::PresetConfig(parts[1]));
    TANDEM_ASSIGN_OR_RETURN(model::VocabSpec vocab,
                            model::DemoVocab(static_cast<int32_t>(config.vocab_size)));
    TANDEM_ASSIGN_OR_RETURN(renderer->tokenizer_, model::Tokenizer::FromVocab(vocab));
    renderer->context_length_ = config.max_position_embeddings;
    renderer->default_name_ = model::DefaultServedModelName(model_reference);
  } else {
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<model::Model> loaded,
                            model::LoadModel(model_reference, {.progress = false}));
    if (!loaded->vocab().has_value() && loaded->tokenizer_json().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model '", model_reference,
                       "' carries no tokenizer; the router needs one to tokenize prompts"));
    }
    TANDEM_ASSIGN_OR_RETURN(renderer->tokenizer_, loaded->MakeTokenizer());
    model_template = loaded->chat_template();
    renderer->context_length_ = loaded->config().max_position_embeddings;
    renderer->default_name_ = model::DefaultServedModelName(model_reference);
  }
  if (model_template.empty()) model_template = renderer->tokenizer_->chat_template();
  absl::StatusOr<model::ChatTemplate> chat =
      model::SelectChatTemplate(model_template, chat_template_override);
  if (chat.ok()) {
    renderer->chat_template_ = *std::move(chat);
  } else if (!chat_template_override.empty()) {
    return Annotate(chat.status(), "--chat-template");
  } else {
    // Completions still work; chat requests get this message.
    renderer->chat_template_error_ = std::string(chat.status().message());
  }
  const model::Tokenizer& tokenizer = *renderer->tokenizer_;
  for (int32_t id = 0; id < tokenizer.vocab_size(); ++id) {
    if (tokenizer.IsEos(id)) renderer->stop_ids_.push_back(id);
  }
  return renderer;
}

bool PromptRenderer::Matches(std::string_view name, std::string_view served_name) const {
  return name == served_name || name == default_name_ || name == reference_;
}

absl::StatusOr<std::vector<std::vector<int32_t>>> PromptRenderer::Render(
    const ApiRequest& request) const {
  std::vector<std::vector<int32_t>> prompts;
  const model::Tokenizer& tokenizer = *tokenizer_;
  if (request.kind == ApiKind::kChat) {
    if (!chat_template_.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("this model has no usable chat template (", chat_template_error_,
                       "); use /v1/completions or start the router with --chat-template"));
    }
    std::vector<model::ChatMessage> messages;
    messages.reserve(request.messages.size());
    for (const ChatMessage& message : request.messages) {
      messages.push_back({message.role, message.content});
    }
    absl::StatusOr<std::string> text = chat_template_->Render(
        messages, request.add_generation_prompt, tokenizer.TokenText(tokenizer.bos_id()),
        tokenizer.TokenText(tokenizer.eos_id()));
    if (!text.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the chat template refused these messages: ", text.status().message()));
    }
    // The rendered text spells its special tokens (and BOS when the template adds it).
    prompts.push_back(tokenizer.Encode(*text, /*add_special=*/false, /*parse_special=*/true));
  } else {
    for (const std::string& text : request.prompts) {
      prompts.push_back(tokenizer.Encode(text, /*add_special=*/true, /*parse_special=*/false));
    }
    for (const std::vector<int32_t>& ids : request.prompt_token_ids) {
      for (int32_t id : ids) {
        if (id >= tokenizer.vocab_size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("token id ", id, " in 'prompt' is not in the vocabulary (size ",
                           tokenizer.vocab_size(), ")"));
        }
      }
      prompts.push_back(ids);
    }
  }
  for (const std::vector<int32_t>& prompt : prompts) {
    if (prompt.empty()) return absl::InvalidArgumentError("the prompt is empty");
  }
  return prompts;
}

}  // namespace tandem::router
