// `tandem model create` writes a dummy-weight model (GGUF file or Hugging Face safetensors
// folder) of a preset or explicit shape; `tandem model info PATH` describes a model file or
// folder: architecture, shapes, dtypes, parameter count, KV bytes per token, tokenizer.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "core/status.h"
#include "model/dtype.h"
#include "model/model.h"
#include "model/model_config.h"
#include "model/model_writer.h"
#include "nlohmann/json.hpp"

namespace tandem::cli {
namespace {

struct CreateOptions {
  std::string arch;
  std::string preset = "tiny";
  std::string dtype = "bf16";
  std::string format = "gguf";
  uint64_t seed = 1;
  std::string out;
  int64_t vocab_size = 0, hidden_size = 0, intermediate_size = 0, layers = 0, heads = 0,
          kv_heads = 0, head_dim = 0, context = 0;
  double rope_theta = 0;
  std::string tie_embeddings;  // "", "true", "false"
  std::string rope_scaling;    // "", "none", "linear", "llama3"
  double rope_factor = 8.0;
  uint64_t max_shard_mb = 5000;
};

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  return unit == 0 ? absl::StrFormat("%.0f B", bytes)
                   : absl::StrFormat("%.2f %s", bytes, units[unit]);
}

absl::StatusOr<model::ModelConfig> BuildConfig(const CreateOptions& o) {
  TANDEM_ASSIGN_OR_RETURN(model::ModelConfig config, model::PresetConfig(o.preset));
  if (!o.arch.empty()) {
    TANDEM_ASSIGN_OR_RETURN(config.architecture, model::ParseArchitecture(o.arch));
    model::ApplyArchitectureDefaults(config);
  }
  if (o.vocab_size > 0) config.vocab_size = o.vocab_size;
  if (o.hidden_size > 0) config.hidden_size = o.hidden_size;
  if (o.intermediate_size > 0) config.intermediate_size = o.intermediate_size;
  if (o.layers > 0) config.num_layers = o.layers;
  if (o.heads > 0) config.num_heads = o.heads;
  if (o.kv_heads > 0) config.num_kv_heads = o.kv_heads;
  if (o.hidden_size > 0 || o.heads > 0) config.head_dim = config.hidden_size / config.num_heads;
  if (o.head_dim > 0) config.head_dim = o.head_dim;
  if (o.context > 0) config.max_position_embeddings = o.context;
  if (o.rope_theta > 0) config.rope_theta = o.rope_theta;
  if (!o.tie_embeddings.empty()) config.tie_word_embeddings = o.tie_embeddings == "true";
  if (o.rope_scaling == "none") {
    config.rope_scaling = {};
  } else if (o.rope_scaling == "linear") {
    config.rope_scaling = {.type = model::RopeScaling::Type::kLinear, .factor = o.rope_factor};
  } else if (o.rope_scaling == "llama3") {
    config.rope_scaling = {.type = model::RopeScaling::Type::kLlama3,
                           .factor = o.rope_factor,
                           .low_freq_factor = 1.0,
                           .high_freq_factor = 4.0,
                           .original_max_position_embeddings = config.max_position_embeddings};
    config.max_position_embeddings =
        static_cast<int64_t>(config.max_position_embeddings * o.rope_factor);
  }
  std::string arch_preset = o.arch.empty() ? "" : absl::StrCat(o.arch, "-");
  config.name = absl::StrCat("tandem-dummy-", arch_preset, o.preset);
  return config;
}

int RunCreate(CLI::App* command, const CreateOptions& o) {
  absl::StatusOr<model::ModelConfig> config = BuildConfig(o);
  if (!config.ok()) return ReportError(command, config.status());
  absl::StatusOr<model::DType> dtype = model::ParseDType(o.dtype);
  if (!dtype.ok()) return ReportError(command, dtype.status());
  model::DummyModelOptions options{.config = *config,
                                   .dtype = *dtype,
                                   .format = o.format == "safetensors"
                                                 ? model::ModelFormat::kSafetensors
                                                 : model::ModelFormat::kGguf,
                                   .seed = o.seed,
                                   .out = o.out,
                                   .max_shard_bytes = o.max_shard_mb * 1'000'000ull};
  const auto start = std::chrono::steady_clock::now();
  const bool tty = ::isatty(STDERR_FILENO);
  auto last = start;
  bool shown = false;
  if (tty) {
    options.on_progress = [&](uint64_t done, uint64_t total) {
      const auto now = std::chrono::steady_clock::now();
      if (total < (256u << 20) || (done < total && now - last < std::chrono::milliseconds(200))) {
        return;
      }
      last = now;
      shown = true;
      std::fprintf(stderr, "\rwriting %s: %s of %s (%.0f%%)", o.out.c_str(),
                   HumanBytes(done).c_str(), HumanBytes(total).c_str(), 100.0 * done / total);
      std::fflush(stderr);
    };
  }
  absl::Status status = model::WriteDummyModel(options);
  if (shown) std::fprintf(stderr, "\n");
  if (!status.ok()) return ReportError(command, status);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("wrote %s (%s, %s, %s parameters, seed %llu) in %.1f s\n", o.out.c_str(),
              o.format.c_str(), model::DTypeName(*dtype).c_str(),
              absl::StrFormat("%.1fM", model::ParameterCount(*config) / 1e6).c_str(),
              static_cast<unsigned long long>(o.seed), seconds);
  return 0;
}

std::string TokenName(const model::VocabSpec& vocab, int32_t id) {
  if (id < 0 || id >= static_cast<int32_t>(vocab.tokens.size())) return "none";
  return absl::StrCat(id, " ", vocab.tokens[id]);
}

int RunInfo(CLI::App* command, const std::string& path, bool json_output, bool all_tensors) {
  absl::StatusOr<std::unique_ptr<model::Model>> loaded = model::LoadModel(path);
  if (!loaded.ok()) return ReportError(command, loaded.status());
  const model::Model& m = **loaded;
  const model::ModelConfig& c = m.config();
  std::map<std::string, std::pair<int64_t, uint64_t>> by_dtype;  // tensors, bytes
  for (const model::TensorView& t : m.tensors()) {
    auto& entry = by_dtype[model::DTypeName(t.dtype)];
    ++entry.first;
    entry.second += t.size_bytes;
  }
  const int64_t kv_bf16 = model::KvBytesPerToken(c, model::DType::kBF16);
  const int64_t kv_f32 = model::KvBytesPerToken(c, model::DType::kF32);
  if (json_output) {
    nlohmann::ordered_json j;
    j["path"] = path;
    j["format"] = m.format() == model::ModelFormat::kGguf ? "gguf" : "safetensors";
    j["architecture"] = model::ArchitectureName(c.architecture);
    j["name"] = c.name;
    j["config"] = nlohmann::json::parse(model::ConfigToHuggingFaceJson(c));
    j["rope_style"] = c.rope_style == model::RopeStyle::kHalf ? "half" : "interleaved";
    j["parameters"] = m.ParameterCount();
    j["tensor_bytes"] = m.TensorBytes();
    j["kv_bytes_per_token"] = {{"bf16", kv_bf16}, {"f32", kv_f32}};
    nlohmann::ordered_json dtypes = nlohmann::ordered_json::object();
    for (const auto& [name, entry] : by_dtype) {
      dtypes[name] = {{"tensors", entry.first}, {"bytes", entry.second}};
    }
    j["dtypes"] = dtypes;
    nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
    for (const model::TensorView& t : m.tensors()) {
      tensors.push_back({{"name", t.name},
                         {"dtype", model::DTypeName(t.dtype)},
                         {"shape", t.shape},
                         {"bytes", t.size_bytes}});
    }
    j["tensors"] = tensors;
    if (m.vocab()) {
      const model::VocabSpec& v = *m.vocab();
      j["tokenizer"] = {
          {"kind", v.kind == model::VocabSpec::Kind::kByteLevelBpe ? "byte-level BPE"
                                                                   : "SentencePiece BPE"},
          {"tokens", v.tokens.size()},
          {"merges", v.merges.size()},
          {"pre_tokenizer", v.pre_tokenizer},
          {"bos_id", v.bos_id},
          {"eos_id", v.eos_id},
          {"add_bos", v.add_bos},
          {"chat_template_bytes", m.chat_template().size()}};
    } else {
      j["tokenizer"] = nullptr;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return 0;
  }
  std::printf("%s: %s model '%s'\n", path.c_str(),
              m.format() == model::ModelFormat::kGguf ? "GGUF" : "safetensors", c.name.c_str());
  std::printf("  %s\n", model::DescribeConfig(c).c_str());
  std::printf("  rope pairs: %s\n", c.rope_style == model::RopeStyle::kHalf
                                        ? "(i, i + head_dim/2) (Hugging Face order)"
                                        : "(2i, 2i+1) (Q/K rows permuted, llama.cpp order)");
  std::printf("  parameters: %s (%lld)\n",
              absl::StrFormat("%.2fM", m.ParameterCount() / 1e6).c_str(),
              static_cast<long long>(m.ParameterCount()));
  std::printf("  weights: %s in %zu tensors:", HumanBytes(m.TensorBytes()).c_str(),
              m.tensors().size());
  for (const auto& [name, entry] : by_dtype) {
    std::printf(" %s x%lld (%s)", name.c_str(), static_cast<long long>(entry.first),
                HumanBytes(entry.second).c_str());
  }
  std::printf("\n  KV cache per token: %s (bf16), %s (f32); %s per 4096-token sequence (bf16)\n",
              HumanBytes(kv_bf16).c_str(), HumanBytes(kv_f32).c_str(),
              HumanBytes(static_cast<double>(kv_bf16) * 4096).c_str());
  if (m.vocab()) {
    const model::VocabSpec& v = *m.vocab();
    int64_t control = 0;
    for (int32_t type : v.token_types) control += type == 3 ? 1 : 0;
    std::printf(
        "  tokenizer: %s, %zu tokens (%lld control), %zu merges, pre-tokenizer '%s', "
        "bos %s, eos %s%s\n",
        v.kind == model::VocabSpec::Kind::kByteLevelBpe ? "byte-level BPE" : "SentencePiece BPE",
        v.tokens.size(), static_cast<long long>(control), v.merges.size(), v.pre_tokenizer.c_str(),
        TokenName(v, v.bos_id).c_str(), TokenName(v, v.eos_id).c_str(),
        v.add_bos ? " (added)" : "");
  } else {
    std::printf("  tokenizer: none\n");
  }
  std::printf("  chat template: %s\n",
              m.chat_template().empty() ? "none"
                                        : absl::StrCat(m.chat_template().size(), " bytes").c_str());
  std::printf("  tensors%s:\n", all_tensors ? "" : " (block 0 shown; --tensors for all)");
  for (const model::TensorView& t : m.tensors()) {
    if (!all_tensors && t.name.rfind("blk.", 0) == 0 && t.name.rfind("blk.0.", 0) != 0) continue;
    std::printf("    %-28s %-5s %-16s %s\n", t.name.c_str(), model::DTypeName(t.dtype).c_str(),
                t.ShapeString().c_str(), HumanBytes(t.size_bytes).c_str());
  }
  return 0;
}

void RegisterModel(CLI::App& root) {
  CLI::App* group = root.add_subcommand("model", "Create and inspect model files");
  group->require_subcommand(1);

  auto o = std::make_shared<CreateOptions>();
  CLI::App* create = group->add_subcommand(
      "create", "Write a dummy-weight model (seeded, reproducible) with a real BPE tokenizer");
  create->add_option("--arch", o->arch, "llama, qwen2 or qwen3 (default: the preset's)")
      ->check(CLI::IsMember({"llama", "qwen2", "qwen3"}));
  create->add_option("--preset", o->preset, "tiny, small, qwen2.5-0.5b or llama-3-8b")
      ->check(CLI::IsMember({"tiny", "small", "qwen2.5-0.5b", "llama-3-8b"}));
  create->add_option("--dtype", o->dtype, "Weight type: f32, f16, bf16 or q8_0 (gguf only)")
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0"}));
  create->add_option("--format", o->format, "gguf (a file) or safetensors (a folder)")
      ->check(CLI::IsMember({"gguf", "safetensors"}));
  create->add_option("--seed", o->seed, "Random seed (same seed, same bytes)");
  create->add_option("--out", o->out, "Output .gguf file or folder")->required();
  create->add_option("--vocab-size", o->vocab_size, "Override: vocabulary size (>= 260)");
  create->add_option("--hidden-size", o->hidden_size, "Override: model width");
  create->add_option("--intermediate-size", o->intermediate_size, "Override: MLP width");
  create->add_option("--layers", o->layers, "Override: number of layers");
  create->add_option("--heads", o->heads, "Override: attention heads");
  create->add_option("--kv-heads", o->kv_heads, "Override: key/value heads (GQA)");
  create->add_option("--head-dim", o->head_dim, "Override: head size (default hidden/heads)");
  create->add_option("--context", o->context, "Override: context length");
  create->add_option("--rope-theta", o->rope_theta, "Override: RoPE base");
  create->add_option("--tie-embeddings", o->tie_embeddings, "Override: true or false")
      ->check(CLI::IsMember({"true", "false"}));
  create->add_option("--rope-scaling", o->rope_scaling, "none, linear or llama3")
      ->check(CLI::IsMember({"none", "linear", "llama3"}));
  create->add_option("--rope-factor", o->rope_factor, "RoPE scaling factor (default 8)");
  create->add_option("--max-shard-mb", o->max_shard_mb,
                     "safetensors: split into shards of at most this many MB (default 5000)");
  SetAction(create, [create, o]() -> int { return RunCreate(create, *o); });

  auto path = std::make_shared<std::string>();
  auto json_output = std::make_shared<bool>(false);
  auto all_tensors = std::make_shared<bool>(false);
  CLI::App* info = group->add_subcommand(
      "info", "Describe a model: architecture, shapes, dtypes, parameters, KV bytes, tokenizer");
  info->add_option("path", *path, ".gguf file or Hugging Face folder")->required();
  info->add_flag("--json", *json_output, "Print JSON");
  info->add_flag("--tensors", *all_tensors, "List every tensor");
  SetAction(info, [info, path, json_output, all_tensors]() -> int {
    return RunInfo(info, *path, *json_output, *all_tensors);
  });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterModel);
}  // namespace tandem::cli
