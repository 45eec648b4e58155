// `tandem generate`: run one prompt through the engine and stream the generated text to stdout.
//
//   tandem generate --model model.gguf --prompt "Once upon a time" --max-tokens 64
//   tandem generate --model random:small --chat --prompt "Hi" --temperature 0.7 --seed 1
//   tandem generate --model random:tiny --prompt-ids 1,2,3 --max-tokens 8
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/command.h"
#include "core/status.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "model/chat_template.h"

namespace tandem::cli {
namespace {

struct GenerateOptions {
  std::string model;
  std::string prompt;
  std::string prompt_ids;
  std::string system;
  bool chat = false;
  int64_t max_tokens = 128;
  float temperature = 1.0f;
  float top_p = 1.0f;
  int top_k = 0;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  int threads = 0;
  int64_t kv_budget_mb = 512;
  bool mlock = false;
  std::string kv_dtype = "auto";
  bool show_ids = false;
};

absl::StatusOr<std::vector<int32_t>> ParseIds(const std::string& text) {
  std::vector<int32_t> ids;
  for (absl::string_view piece : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("--prompt-ids: '", std::string(piece),
                                                     "' is not a token id; expected e.g. 1,2,3"));
    }
    ids.push_back(id);
  }
  if (ids.empty()) return absl::InvalidArgumentError("--prompt-ids holds no token ids");
  return ids;
}

absl::StatusOr<std::vector<int32_t>> PromptTokens(const GenerateOptions& o,
                                                  const model::Tokenizer* tokenizer,
                                                  const std::string& chat_template) {
  if (!o.prompt_ids.empty()) return ParseIds(o.prompt_ids);
  if (o.prompt.empty()) {
    return absl::InvalidArgumentError("give the prompt as --prompt TEXT or --prompt-ids 1,2,3");
  }
  if (tokenizer == nullptr) {
    return absl::InvalidArgumentError(
        "this model carries no tokenizer: give the prompt as --prompt-ids 1,2,3");
  }
  if (!o.chat) return tokenizer->Encode(o.prompt, /*add_special=*/true, /*parse_special=*/false);
  if (chat_template.empty()) {
    return absl::InvalidArgumentError("--chat: this model carries no chat template");
  }
  auto parsed = model::ChatTemplate::Parse(chat_template);
  if (!parsed.ok()) return Annotate(parsed.status(), "the model's chat template");
  std::vector<model::ChatMessage> messages;
  if (!o.system.empty()) messages.push_back({"system", o.system});
  messages.push_back({"user", o.prompt});
  auto text = parsed->Render(messages, /*add_generation_prompt=*/true,
                             tokenizer->TokenText(tokenizer->bos_id()),
                             tokenizer->TokenText(tokenizer->eos_id()));
  if (!text.ok()) return Annotate(text.status(), "rendering the chat template");
  // The rendered text spells its special tokens (and BOS, when the template adds it).
  return tokenizer->Encode(*text, /*add_special=*/false, /*parse_special=*/true);
}

int RunGenerate(const CLI::App* command, const GenerateOptions& o) {
  absl::Status required = RequireOptions(command, {"model"});
  if (!required.ok()) return ReportError(command, required);
  auto loaded = engine::LoadEngineModel(o.model);
  if (!loaded.ok()) return ReportError(command, loaded.status());
  const model::Tokenizer* tokenizer = loaded->tokenizer.get();
  auto prompt = PromptTokens(o, tokenizer, loaded->chat_template);
  if (!prompt.ok()) return ReportError(command, prompt.status());

  auto kv_type = engine::ParseKvTypeOption(o.kv_dtype);
  if (!kv_type.ok()) return ReportError(command, Annotate(kv_type.status(), "--kv-dtype"));
  auto engine = engine::Engine::Create(loaded->model, {.threads = o.threads,
                                                       .kv_type = *kv_type,
                                                       .kv_budget_bytes = o.kv_budget_mb << 20,
                                                       .lock_memory = o.mlock});
  if (!engine.ok()) return ReportError(command, engine.status());

  engine::GenerateRequest request;
  request.prompt = *prompt;
  request.max_tokens = o.max_tokens;
  request.sampling = {.temperature = o.temperature,
                      .top_k = o.top_k,
                      .top_p = o.top_p,
                      .min_p = o.min_p,
                      .repetition_penalty = o.repetition_penalty,
                      .presence_penalty = o.presence_penalty,
                      .frequency_penalty = o.frequency_penalty,
                      .seed = o.seed};
  if (tokenizer != nullptr && !o.ignore_eos) {
    for (int32_t id = 0; id < tokenizer->vocab_size(); ++id) {
      if (tokenizer->IsEos(id)) request.stop_token_ids.push_back(id);
    }
  }
  std::unique_ptr<model::StreamDecoder> decoder;
  if (tokenizer != nullptr && !o.show_ids) {
    decoder = std::make_unique<model::StreamDecoder>(*tokenizer, /*skip_special=*/true);
  }
  engine::StopStringMatcher stops(o.stop);
  request.on_token = [&](const engine::TokenEvent& event) {
    if (decoder == nullptr) {
      std::printf("%s%d", event.index == 0 ? "" : " ", event.sampled.token);
      std::fflush(stdout);
      return true;
    }
    engine::StopStringMatcher::Result piece = stops.Append(decoder->Feed(event.sampled.token));
    std::fwrite(piece.text.data(), 1, piece.text.size(), stdout);
    std::fflush(stdout);
    return !piece.stopped;
  };
  std::promise<engine::FinishEvent> finished;
  request.on_finish = [&](const engine::FinishEvent& event) { finished.set_value(event); };
  const auto start = std::chrono::steady_clock::now();
  auto id = (*engine)->Submit(std::move(request));
  if (!id.ok()) return ReportError(command, id.status());
  engine::FinishEvent result = finished.get_future().get();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (decoder != nullptr) {
    engine::StopStringMatcher::Result tail = stops.Append(decoder->Flush());
    std::string rest = tail.text + (tail.stopped ? "" : stops.Flush());
    std::fwrite(rest.data(), 1, rest.size(), stdout);
  }
  std::printf("\n");
  std::fflush(stdout);
  if (!result.status.ok()) return ReportError(command, result.status);
  std::fprintf(
      stderr, "[%lld prompt tokens, %lld generated in %.2f s (%.1f tokens/s), finish: %s]\n",
      static_cast<long long>(result.prompt_tokens), static_cast<long long>(result.generated_tokens),
      seconds, result.generated_tokens / std::max(seconds, 1e-9),
      std::string(engine::FinishReasonName(result.reason)).c_str());
  return 0;
}

void RegisterGenerate(CLI::App& root) {
  CLI::App* generate =
      root.add_subcommand("generate", "Generate text from a prompt with the engine");
  auto o = std::make_shared<GenerateOptions>();
  generate->add_option("--model", o->model,
                       "Model file (GGUF), Hugging Face folder, or random:<shape>[:<dtype>]");
  generate->add_option("--prompt", o->prompt, "Prompt text");
  generate->add_option("--prompt-ids", o->prompt_ids, "Prompt as token ids, e.g. 1,2,3");
  generate->add_flag("--chat", o->chat, "Wrap the prompt in the model's chat template");
  generate->add_option("--system", o->system, "System message (with --chat)");
  generate->add_option("--max-tokens", o->max_tokens, "Most tokens to generate");
  generate->add_option("--temperature", o->temperature, "0 = greedy");
  generate->add_option("--top-p", o->top_p, "Nucleus sampling mass, (0, 1]");
  generate->add_option("--top-k", o->top_k, "Sample among the k most likely (0 = all)");
  generate->add_option("--min-p", o->min_p, "Drop tokens below min-p x the top probability");
  generate->add_option("--repetition-penalty", o->repetition_penalty, "1 = off");
  generate->add_option("--presence-penalty", o->presence_penalty, "[-2, 2]");
  generate->add_option("--frequency-penalty", o->frequency_penalty, "[-2, 2]");
  generate->add_option("--seed", o->seed, "Sampling seed (reproducible output)");
  generate->add_option("--stop", o->stop, "Stop string (repeatable)");
  generate->add_flag("--ignore-eos", o->ignore_eos, "Keep generating past end-of-text tokens");
  generate->add_flag("--show-ids", o->show_ids, "Print token ids instead of text");
  generate->add_option("--threads", o->threads, "Engine threads (0 = one per core)");
  generate->add_option("--kv-budget-mb", o->kv_budget_mb, "KV cache memory in MiB");
  generate->add_flag("--mlock", o->mlock,
                     "Lock the weights and the KV cache in RAM (needs RLIMIT_MEMLOCK for their "
                     "size, or CAP_IPC_LOCK)");
  generate->add_option("--kv-dtype", o->kv_dtype,
                       "KV cache element type: auto (bf16 unless the weights are f32), f32, bf16");
  SetAction(generate, [generate, o]() -> int { return RunGenerate(generate, *o); });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterGenerate);
}  // namespace tandem::cli
