#include "model/model.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "model/gguf.h"
#include "model/gguf_model.h"
#include "model/mapped_file.h"
#include "model/safetensors.h"
#include "model/tokenizer.h"
#include "nlohmann/json.hpp"

namespace tandem::model {

// Fills a Model; the only code allowed to construct one.
class ModelBuilder {
 public:
  static std::unique_ptr<Model> New() { return std::unique_ptr<Model>(new Model()); }
  static Model& Get(Model& model) { return model; }
  static void AddTensor(Model& model, TensorView view) {
    model.index_.emplace(view.name, model.tensors_.size());
    model.tensors_.push_back(std::move(view));
  }
  static ModelConfig& config(Model& m) { return m.config_; }
  static ModelFormat& format(Model& m) { return m.format_; }
  static std::string& path(Model& m) { return m.path_; }
  static std::optional<VocabSpec>& vocab(Model& m) { return m.vocab_; }
  static std::string& tokenizer_json(Model& m) { return m.tokenizer_json_; }
  static std::string& tokenizer_config_json(Model& m) { return m.tokenizer_config_json_; }
  static std::string& chat_template(Model& m) { return m.chat_template_; }
  static std::vector<std::pair<std::string, std::string>>& metadata(Model& m) {
    return m.metadata_summary_;
  }
  static std::vector<std::unique_ptr<MappedFile>>& files(Model& m) { return m.files_; }
};

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A progress bar on stderr for big models, only on a terminal.
class Progress {
 public:
  Progress(std::string label, uint64_t total, bool enabled)
      : label_(std::move(label)),
        total_(total),
        enabled_(enabled),
        start_(std::chrono::steady_clock::now()) {}
  ~Progress() {
    if (enabled_ && shown_) std::fprintf(stderr, "\n");
  }
  void Update(uint64_t done) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    shown_ = true;
    const double fraction = total_ == 0 ? 1.0 : static_cast<double>(done) / total_;
    const double seconds = std::chrono::duration<double>(now - start_).count();
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(fraction * kWidth);
    std::fprintf(stderr, "\rloading %s [%s%s] %3d%% %.2f/%.2f GB %.2f GB/s", label_.c_str(),
                 std::string(filled, '#').c_str(), std::string(kWidth - filled, ' ').c_str(),
                 static_cast<int>(fraction * 100), done / 1e9, total_ / 1e9,
                 seconds > 0 ? done / 1e9 / seconds : 0.0);
    std::fflush(stderr);
  }

 private:
  std::string label_;
  uint64_t total_;
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_, last_;
};

// Reads every page of every tensor once (so later use does not fault), with progress.
void Prefetch(const Model& model, const std::vector<const MappedFile*>& files,
              const LoadOptions& options, uint64_t total) {
  const bool show = options.progress && total >= options.progress_min_bytes && ::isatty(2);
  if (!options.prefetch && !show) return;
  for (const MappedFile* file : files) file->AdviseSequential();
  Progress progress(fs::path(model.path()).filename().string(), total, show);
  uint64_t done = 0;
  volatile uint8_t sink = 0;
  for (const TensorView& tensor : model.tensors()) {
    constexpr uint64_t kPage = 4096;
    uint8_t acc = 0;
    for (uint64_t offset = 0; offset < tensor.size_bytes; offset += kPage) {
      acc ^= tensor.data[offset];
      if ((offset & ((64u << 20) - 1)) == 0) progress.Update(done + offset);
    }
    sink = sink ^ acc;
    done += tensor.size_bytes;
    progress.Update(done);
  }
  (void)sink;
}

absl::StatusOr<std::string> ReadTextFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read '", path.string(), "'"));
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// Checks that every tensor `config` needs is present with the expected shape.
absl::Status CheckTensors(const Model& model, absl::string_view source) {
  for (const ExpectedTensor& expected : ExpectedTensors(model.config())) {
    const TensorView* tensor = model.FindTensor(expected.name);
    if (tensor == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": missing tensor '", expected.name, "' (expected shape ",
                       TensorView{.shape = expected.shape}.ShapeString(), " for ",
                       ArchitectureName(model.config().architecture), ")"));
    }
    if (tensor->shape != expected.shape) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", expected.name, "' has shape ", tensor->ShapeString(),
                       ", expected ", TensorView{.shape = expected.shape}.ShapeString(),
                       " (GGUF order, contiguous dimension first)"));
    }
  }
  if (const TensorView* output = model.FindTensor("output.weight")) {
    const std::vector<int64_t> expected = {model.config().hidden_size, model.config().vocab_size};
    if (output->shape != expected) {
      return absl::InvalidArgumentError(absl::StrCat(source, ": tensor 'output.weight' has shape ",
                                                     output->ShapeString(), ", expected ",
                                                     TensorView{.shape = expected}.ShapeString()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Model>> LoadGguf(const std::string& path,
                                                std::unique_ptr<MappedFile> file,
                                                const LoadOptions& options) {
  TANDEM_ASSIGN_OR_RETURN(GgufFile gguf, ParseGguf(file->data(), file->size(), path));
  std::vector<float> rope_freqs;
  const std::vector<float>* rope_freqs_ptr = nullptr;
  if (const GgufTensorInfo* info = gguf.FindTensor("rope_freqs.weight")) {
    int64_t elements = 1;
    for (int64_t extent : info->shape) elements *= extent;
    rope_freqs.resize(elements);
    TANDEM_RETURN_IF_ERROR(DequantizeRow(
        info->dtype, file->data() + gguf.data_offset + info->offset, elements, rope_freqs.data()));
    rope_freqs_ptr = &rope_freqs;
  }
  std::unique_ptr<Model> model = ModelBuilder::New();
  ModelBuilder::format(*model) = ModelFormat::kGguf;
  ModelBuilder::path(*model) = path;
  TANDEM_ASSIGN_OR_RETURN(ModelBuilder::config(*model), ConfigFromGguf(gguf, path, rope_freqs_ptr));
  TANDEM_ASSIGN_OR_RETURN(ModelBuilder::vocab(*model), VocabFromGguf(gguf, path));
  if (model->vocab()) ModelBuilder::chat_template(*model) = model->vocab()->chat_template;
  for (const auto& [key, value] : gguf.metadata) {
    ModelBuilder::metadata(*model).emplace_back(key, value.DebugString());
  }
  uint64_t total = 0;
  for (const GgufTensorInfo& info : gguf.tensors) {
    ModelBuilder::AddTensor(*model,
                            TensorView{.name = info.name,
                                       .dtype = info.dtype,
                                       .shape = info.shape,
                                       .data = file->data() + gguf.data_offset + info.offset,
                                       .size_bytes = info.size_bytes});
    total += info.size_bytes;
  }
  const MappedFile* raw = file.get();
  ModelBuilder::files(*model).push_back(std::move(file));
  TANDEM_RETURN_IF_ERROR(CheckTensors(*model, path));
  Prefetch(*model, {raw}, options, total);
  return model;
}

absl::StatusOr<std::unique_ptr<Model>> LoadFolder(const std::string& path,
                                                  const LoadOptions& options) {
  const fs::path folder(path);
  const fs::path config_path = folder / "config.json";
  absl::StatusOr<std::string> config_text = ReadTextFile(config_path);
  if (!config_text.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "model folder '", path,
        "': no config.json (expected a Hugging Face folder with config.json, model.safetensors "
        "or model.safetensors.index.json, and tokenizer.json)"));
  }
  std::unique_ptr<Model> model = ModelBuilder::New();
  ModelBuilder::format(*model) = ModelFormat::kSafetensors;
  ModelBuilder::path(*model) = path;
  TANDEM_ASSIGN_OR_RETURN(ModelBuilder::config(*model),
                          ConfigFromHuggingFaceJson(*config_text, config_path.string()));
  ModelBuilder::config(*model).name = folder.filename().string();
  if (ModelBuilder::config(*model).name.empty()) {
    ModelBuilder::config(*model).name = folder.parent_path().filename().string();
  }

  // Which files hold the weights: one model.safetensors, or the shards an index names.
  std::vector<std::string> shard_names;
  absl::flat_hash_map<std::string, std::string> weight_map;  // HF tensor name -> shard
  const fs::path index_path = folder / "model.safetensors.index.json";
  if (fs::exists(folder / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else if (fs::exists(index_path)) {
    TANDEM_ASSIGN_OR_RETURN(std::string index_text, ReadTextFile(index_path));
    Json index = Json::parse(index_text, nullptr, /*allow_exceptions=*/false);
    auto map = index.is_object() ? index.find("weight_map") : index.end();
    if (index.is_discarded() || !index.is_object() || map == index.end() || !map->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": expected a JSON object with a 'weight_map' object"));
    }
    for (auto it = map->begin(); it != map->end(); ++it) {
      if (!it->is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": weight_map entry '",
                                                       it.key(), "': expected a file name"));
      }
      const std::string shard = it->get<std::string>();
      if (shard.empty() || absl::StrContains(shard, '/') || shard == "." || shard == "..") {
        return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": weight_map entry '",
                                                       it.key(), "': bad file name '", shard, "'"));
      }
      weight_map[it.key()] = shard;
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end()) {
        shard_names.push_back(shard);
      }
    }
    std::sort(shard_names.begin(), shard_names.end());
  } else {
    return absl::NotFoundError(absl::StrCat(
        "model folder '", path,
        "': no model.safetensors or model.safetensors.index.json (expected the weights in "
        "safetensors format)"));
  }

  uint64_t total = 0;
  std::vector<const MappedFile*> raw_files;
  for (const std::string& shard : shard_names) {
    const std::string shard_path = (folder / shard).string();
    TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(shard_path));
    TANDEM_ASSIGN_OR_RETURN(SafetensorsFile st,
                            ParseSafetensors(file->data(), file->size(), shard_path));
    for (const SafetensorsTensor& tensor : st.tensors) {
      if (!weight_map.empty()) {
        auto it = weight_map.find(tensor.name);
        if (it == weight_map.end() || it->second != shard) {
          return absl::InvalidArgumentError(absl::StrCat(shard_path, ": tensor '", tensor.name,
                                                         "' is not listed for this file in ",
                                                         index_path.string()));
        }
      }
      std::optional<std::string> name = HuggingFaceToGgufName(tensor.name);
      if (!name) continue;  // e.g. rotary_emb.inv_freq buffers of old checkpoints
      if (model->FindTensor(*name) != nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat(shard_path, ": tensor '", tensor.name, "' appears twice"));
      }
      TensorView view{.name = *name,
                      .dtype = tensor.dtype,
                      .shape = std::vector<int64_t>(tensor.shape.rbegin(), tensor.shape.rend()),
                      .data = file->data() + st.data_offset + tensor.begin,
                      .size_bytes = tensor.end - tensor.begin};
      if (view.shape.empty()) view.shape = {1};
      if (view.elements() == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(shard_path, ": tensor '", tensor.name, "' is empty"));
      }
      total += view.size_bytes;
      ModelBuilder::AddTensor(*model, std::move(view));
    }
    raw_files.push_back(file.get());
    ModelBuilder::files(*model).push_back(std::move(file));
  }
  for (const auto& [name, shard] : weight_map) {
    std::optional<std::string> gguf_name = HuggingFaceToGgufName(name);
    if (gguf_name && model->FindTensor(*gguf_name) == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(index_path.string(), ": tensor '", name,
                                                     "' is listed in '", shard,
                                                     "' but that file does not hold it"));
    }
  }
  // A tied model may still ship lm_head; an untied one must.
  if (model->FindTensor("output.weight") == nullptr) {
    ModelBuilder::config(*model).tie_word_embeddings = true;
  }
  TANDEM_RETURN_IF_ERROR(CheckTensors(*model, path));

  const fs::path tokenizer_path = folder / "tokenizer.json";
  if (fs::exists(tokenizer_path)) {
    TANDEM_ASSIGN_OR_RETURN(ModelBuilder::tokenizer_json(*model), ReadTextFile(tokenizer_path));
    const fs::path tokenizer_config_path = folder / "tokenizer_config.json";
    if (fs::exists(tokenizer_config_path)) {
      TANDEM_ASSIGN_OR_RETURN(ModelBuilder::tokenizer_config_json(*model),
                              ReadTextFile(tokenizer_config_path));
    }
    TANDEM_ASSIGN_OR_RETURN(
        VocabSpec vocab,
        Tokenizer::VocabFromHuggingFaceJson(model->tokenizer_json(), model->tokenizer_config_json(),
                                            tokenizer_path.string()));
    ModelBuilder::chat_template(*model) = vocab.chat_template;
    ModelBuilder::vocab(*model) = std::move(vocab);
  }
  Prefetch(*model, raw_files, options, total);
  return model;
}

}  // namespace

int64_t TensorView::elements() const {
  int64_t n = 1;
  for (int64_t extent : shape) n *= extent;
  return n;
}

std::string TensorView::ShapeString() const {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

Model::Model() = default;
Model::~Model() = default;

const TensorView* Model::FindTensor(std::string_view name) const {
  auto it = index_.find(absl::string_view(name.data(), name.size()));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<const TensorView*> Model::GetTensor(std::string_view name) const {
  const TensorView* tensor = FindTensor(name);
  if (tensor == nullptr) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", std::string(name), "'"));
  }
  return tensor;
}

void Model::ReleasePages(const void* first, uint64_t bytes) const {
  const auto* p = static_cast<const uint8_t*>(first);
  for (const auto& file : files_) {
    if (file->Contains(p, bytes)) file->Release(p, bytes);
  }
}

int64_t Model::ParameterCount() const {
  int64_t total = 0;
  for (const TensorView& tensor : tensors_) total += tensor.elements();
  return total;
}

uint64_t Model::TensorBytes() const {
  uint64_t total = 0;
  for (const TensorView& tensor : tensors_) total += tensor.size_bytes;
  return total;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Model::MakeTokenizer() const {
  if (!tokenizer_json_.empty()) {
    return Tokenizer::FromHuggingFaceJson(tokenizer_json_, tokenizer_config_json_,
                                          absl::StrCat(path_, "/tokenizer.json"));
  }
  if (vocab_) return Tokenizer::FromVocab(*vocab_);
  return absl::NotFoundError(absl::StrCat(path_, ": the model carries no tokenizer"));
}

std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& c) {
  std::vector<ExpectedTensor> out;
  const int64_t q = c.num_heads * c.head_dim;
  const int64_t kv = c.num_kv_heads * c.head_dim;
  out.push_back({"token_embd.weight", {c.hidden_size, c.vocab_size}, false});
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = absl::StrCat("blk.", i, ".");
    out.push_back({b + "attn_norm.weight", {c.hidden_size}, true});
    out.push_back({b + "attn_q.weight", {c.hidden_size, q}, false});
    out.push_back({b + "attn_k.weight", {c.hidden_size, kv}, false});
    out.push_back({b + "attn_v.weight", {c.hidden_size, kv}, false});
    if (c.attention_bias) {
      out.push_back({b + "attn_q.bias", {q}, true});
      out.push_back({b + "attn_k.bias", {kv}, true});
      out.push_back({b + "attn_v.bias", {kv}, true});
    }
    if (c.qk_norm) {
      out.push_back({b + "attn_q_norm.weight", {c.head_dim}, true});
      out.push_back({b + "attn_k_norm.weight", {c.head_dim}, true});
    }
    out.push_back({b + "attn_output.weight", {q, c.hidden_size}, false});
    out.push_back({b + "ffn_norm.weight", {c.hidden_size}, true});
    out.push_back({b + "ffn_gate.weight", {c.hidden_size, c.intermediate_size}, false});
    out.push_back({b + "ffn_up.weight", {c.hidden_size, c.intermediate_size}, false});
    out.push_back({b + "ffn_down.weight", {c.intermediate_size, c.hidden_size}, false});
  }
  out.push_back({"output_norm.weight", {c.hidden_size}, true});
  if (!c.tie_word_embeddings)
    out.push_back({"output.weight", {c.hidden_size, c.vocab_size}, false});
  return out;
}

namespace {
struct NameMapping {
  const char* hf;
  const char* gguf;
};
// Per-layer names, after "model.layers.{i}." / "blk.{i}.".
constexpr NameMapping kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
constexpr NameMapping kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};
}  // namespace

std::optional<std::string> HuggingFaceToGgufName(std::string_view hf_name) {
  for (const NameMapping& m : kGlobalNames) {
    if (hf_name == m.hf) return std::string(m.gguf);
  }
  constexpr std::string_view kPrefix = "model.layers.";
  if (hf_name.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  hf_name.remove_prefix(kPrefix.size());
  const size_t dot = hf_name.find('.');
  int64_t layer;
  if (dot == std::string_view::npos ||
      !absl::SimpleAtoi(std::string(hf_name.substr(0, dot)), &layer) || layer < 0) {
    return std::nullopt;
  }
  const std::string_view rest = hf_name.substr(dot + 1);
  for (const NameMapping& m : kLayerNames) {
    if (rest == m.hf) return absl::StrCat("blk.", layer, ".", m.gguf);
  }
  return std::nullopt;
}

std::string GgufToHuggingFaceName(std::string_view gguf_name) {
  for (const NameMapping& m : kGlobalNames) {
    if (gguf_name == m.gguf) return std::string(m.hf);
  }
  std::string_view rest = gguf_name;
  if (rest.substr(0, 4) == "blk.") {
    rest.remove_prefix(4);
    const size_t dot = rest.find('.');
    if (dot != std::string_view::npos) {
      const std::string_view suffix = rest.substr(dot + 1);
      for (const NameMapping& m : kLayerNames) {
        if (suffix == m.gguf) {
          return absl::StrCat("model.layers.", std::string(rest.substr(0, dot)), ".", m.hf);
        }
      }
    }
  }
  return std::string(gguf_name);
}

absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& path,
                                                 const LoadOptions& options) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (error || !fs::exists(status)) {
    return absl::NotFoundError(absl::StrCat("model '", path,
                                            "' does not exist (expected a .gguf file or a "
                                            "Hugging Face folder)"));
  }
  if (fs::is_directory(status)) return LoadFolder(path, options);
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open(path));
  if (file->size() >= 4 && std::memcmp(file->data(), "GGUF", 4) == 0) {
    return LoadGguf(path, std::move(file), options);
  }
  if (absl::EndsWith(path, ".safetensors")) {
    return absl::InvalidArgumentError(
        absl::StrCat("model '", path,
                     "' is a safetensors file; pass the folder that holds it with config.json and "
                     "tokenizer.json"));
  }
  // Not GGUF: let the parser produce its wrong-magic message.
  return ParseGguf(file->data(), file->size(), path).status();
}

std::string DefaultServedModelName(std::string_view reference) {
  if (reference.substr(0, 7) == "random:") {
    std::string_view shape = reference.substr(7);
    return "random-" + std::string(shape.substr(0, shape.find(':')));
  }
  std::filesystem::path path{std::string(reference)};
  while (path.has_parent_path() && path.filename().empty()) path = path.parent_path();
  std::string name = path.stem().string();
  return name.empty() ? std::string(reference) : name;
}

}  // namespace tandem::model
