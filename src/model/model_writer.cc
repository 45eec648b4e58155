#include "model/model_writer.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/status.h"
#include "model/gguf.h"
#include "model/gguf_model.h"
#include "model/safetensors.h"
#include "model/vocab.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

namespace fs = std::filesystem;

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t Fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (char c : text) {
    hash ^= static_cast<uint8_t>(c);
    hash *= 0x100000001b3ull;
  }
  return hash;
}

bool IsQOrK(std::string_view name) {
  return name.size() > 14 && (name.substr(name.size() - 14) == ".attn_q.weight" ||
                              name.substr(name.size() - 14) == ".attn_k.weight");
}

// GGUF general.file_type values (llama_ftype).
uint32_t FileType(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return 0;
    case DType::kF16:
      return 1;
    case DType::kQ8_0:
      return 7;
    case DType::kBF16:
      return 32;
    default:
      return 0;
  }
}

struct PlannedTensor {
  ExpectedTensor tensor;
  DType dtype;
  uint64_t bytes;
};

std::vector<PlannedTensor> Plan(const ModelConfig& config, DType dtype) {
  std::vector<PlannedTensor> plan;
  for (ExpectedTensor& tensor : ExpectedTensors(config)) {
    const DType type = tensor.is_vector ? DType::kF32 : dtype;
    int64_t elements = 1;
    for (int64_t extent : tensor.shape) elements *= extent;
    const uint64_t bytes = static_cast<uint64_t>(ByteSize(type, elements));
    plan.push_back({std::move(tensor), type, bytes});
  }
  return plan;
}

// Generates a tensor's rows (in the file's row order) in chunks and hands their bytes to `sink`.
absl::Status StreamTensor(const ModelConfig& config, uint64_t seed, const PlannedTensor& planned,
                          bool gguf, const std::function<absl::Status(const void*, size_t)>& sink,
                          uint64_t* written, uint64_t total,
                          const std::function<void(uint64_t, uint64_t)>& on_progress) {
  const ExpectedTensor& tensor = planned.tensor;
  const int64_t cols = tensor.shape[0];
  const int64_t rows = tensor.shape.size() > 1 ? tensor.shape[1] : 1;
  const int64_t row_bytes = ByteSize(planned.dtype, cols);
  const bool permute = gguf && config.architecture == Architecture::kLlama && IsQOrK(tensor.name);
  const int64_t heads =
      tensor.name.find("attn_q") != std::string::npos ? config.num_heads : config.num_kv_heads;
  constexpr int64_t kChunkBytes = 4 << 20;
  const int64_t rows_per_chunk = std::max<int64_t>(1, kChunkBytes / row_bytes);
  std::vector<uint8_t> buffer(static_cast<size_t>(std::min(rows, rows_per_chunk) * row_bytes));
  std::vector<float> values(cols);
  for (int64_t first = 0; first < rows; first += rows_per_chunk) {
    const int64_t count = std::min(rows_per_chunk, rows - first);
    for (int64_t r = 0; r < count; ++r) {
      const int64_t row = first + r;
      const int64_t source_row =
          permute ? LlamaGgufRowToHuggingFaceRow(row, heads, config.head_dim) : row;
      DummyTensorRow(config, seed, tensor, source_row, values.data());
      TANDEM_RETURN_IF_ERROR(
          QuantizeRow(planned.dtype, values.data(), cols, buffer.data() + r * row_bytes));
    }
    TANDEM_RETURN_IF_ERROR(sink(buffer.data(), static_cast<size_t>(count * row_bytes)));
    *written += static_cast<uint64_t>(count * row_bytes);
    if (on_progress) on_progress(*written, total);
  }
  return absl::OkStatus();
}

absl::Status WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write '", path.string(), "'"));
  return absl::OkStatus();
}

absl::Status WriteGgufModel(const DummyModelOptions& options, const ModelConfig& config,
                            const VocabSpec& vocab) {
  GgufWriter writer;
  ConfigToGguf(config, writer);
  writer.SetUint32("general.file_type", FileType(options.dtype));
  writer.SetString("general.description",
                   absl::StrCat("Tandem dummy-weight model, seed ", options.seed));
  VocabToGguf(vocab, writer);
  const std::vector<PlannedTensor> plan = Plan(config, options.dtype);
  uint64_t total = 0;
  for (const PlannedTensor& p : plan) {
    TANDEM_RETURN_IF_ERROR(writer.AddTensor(p.tensor.name, p.dtype, p.tensor.shape));
    total += p.bytes;
  }
  TANDEM_RETURN_IF_ERROR(writer.Open(options.out));
  uint64_t written = 0;
  auto sink = [&](const void* data, size_t size) { return writer.Append(data, size); };
  for (const PlannedTensor& p : plan) {
    TANDEM_RETURN_IF_ERROR(StreamTensor(config, options.seed, p, /*gguf=*/true, sink, &written,
                                        total, options.on_progress));
  }
  return writer.Finish();
}

absl::Status WriteSafetensorsModel(const DummyModelOptions& options, const ModelConfig& config,
                                   const VocabSpec& vocab) {
  const fs::path folder(options.out);
  std::error_code error;
  fs::create_directories(folder, error);
  if (error) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create folder '", options.out, "': ", error.message()));
  }
  const std::vector<PlannedTensor> plan = Plan(config, options.dtype);
  // Shards: consecutive tensors up to max_shard_bytes each.
  std::vector<std::vector<const PlannedTensor*>> shards(1);
  uint64_t shard_bytes = 0, total = 0;
  for (const PlannedTensor& p : plan) {
    if (!shards.back().empty() && shard_bytes + p.bytes > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shards.back().push_back(&p);
    shard_bytes += p.bytes;
    total += p.bytes;
  }
  // Remove what an earlier run with other sharding left, so the folder is unambiguous.
  for (const fs::directory_entry& entry : fs::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name == "model.safetensors" || name == "model.safetensors.index.json" ||
        (name.rfind("model-", 0) == 0 && entry.path().extension() == ".safetensors")) {
      fs::remove(entry.path(), error);
    }
  }
  nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
  uint64_t written = 0;
  for (size_t s = 0; s < shards.size(); ++s) {
    const std::string name = shards.size() == 1 ? "model.safetensors"
                                                : absl::StrFormat("model-%05d-of-%05d.safetensors",
                                                                  s + 1, shards.size());
    SafetensorsWriter writer;
    writer.SetMetadata("format", "pt");
    for (const PlannedTensor* p : shards[s]) {
      const std::string hf_name = GgufToHuggingFaceName(p->tensor.name);
      TANDEM_RETURN_IF_ERROR(
          writer.AddTensor(hf_name, p->dtype,
                           std::vector<int64_t>(p->tensor.shape.rbegin(), p->tensor.shape.rend())));
      weight_map[hf_name] = name;
    }
    TANDEM_RETURN_IF_ERROR(writer.Open((folder / name).string()));
    auto sink = [&](const void* data, size_t size) { return writer.Append(data, size); };
    for (const PlannedTensor* p : shards[s]) {
      TANDEM_RETURN_IF_ERROR(StreamTensor(config, options.seed, *p, /*gguf=*/false, sink, &written,
                                          total, options.on_progress));
    }
    TANDEM_RETURN_IF_ERROR(writer.Finish());
  }
  if (shards.size() > 1) {
    nlohmann::ordered_json index;
    index["metadata"] = {{"total_size", total}};
    index["weight_map"] = weight_map;
    TANDEM_RETURN_IF_ERROR(
        WriteText(folder / "model.safetensors.index.json", index.dump(2) + "\n"));
  }
  ModelConfig hf_config = config;
  TANDEM_RETURN_IF_ERROR(WriteText(folder / "config.json", ConfigToHuggingFaceJson(hf_config)));
  TANDEM_RETURN_IF_ERROR(WriteText(folder / "tokenizer.json", VocabToTokenizerJson(vocab)));
  TANDEM_RETURN_IF_ERROR(
      WriteText(folder / "tokenizer_config.json", VocabToTokenizerConfigJson(vocab)));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> PresetConfig(std::string_view preset) {
  ModelConfig c;
  if (preset == "tiny") {
    c = {.architecture = Architecture::kLlama,
         .vocab_size = 512,
         .hidden_size = 64,
         .intermediate_size = 128,
         .num_layers = 2,
         .num_heads = 4,
         .num_kv_heads = 2,
         .head_dim = 16,
         .rms_norm_eps = 1e-5,
         .rope_theta = 10000.0,
         .max_position_embeddings = 8192};
  } else if (preset == "small") {
    c = {.architecture = Architecture::kLlama,
         .vocab_size = 8192,
         .hidden_size = 512,
         .intermediate_size = 1536,
         .num_layers = 8,
         .num_heads = 8,
         .num_kv_heads = 4,
         .head_dim = 64,
         .rms_norm_eps = 1e-5,
         .rope_theta = 10000.0,
         .max_position_embeddings = 4096};
  } else if (preset == "qwen2.5-0.5b") {
    c = {.architecture = Architecture::kQwen2,
         .vocab_size = 151936,
         .hidden_size = 896,
         .intermediate_size = 4864,
         .num_layers = 24,
         .num_heads = 14,
         .num_kv_heads = 2,
         .head_dim = 64,
         .rms_norm_eps = 1e-6,
         .rope_theta = 1000000.0,
         .max_position_embeddings = 32768,
         .tie_word_embeddings = true};
  } else if (preset == "llama-3-8b") {
    c = {.architecture = Architecture::kLlama,
         .vocab_size = 128256,
         .hidden_size = 4096,
         .intermediate_size = 14336,
         .num_layers = 32,
         .num_heads = 32,
         .num_kv_heads = 8,
         .head_dim = 128,
         .rms_norm_eps = 1e-5,
         .rope_theta = 500000.0,
         .max_position_embeddings = 8192};
  } else {
    return absl::InvalidArgumentError(absl::StrCat("unknown preset '", std::string(preset),
                                                   "'; expected one of ",
                                                   absl::StrJoin(PresetNames(), ", ")));
  }
  ApplyArchitectureDefaults(c);
  c.name = std::string(preset);
  return c;
}

std::vector<std::string> PresetNames() { return {"tiny", "small", "qwen2.5-0.5b", "llama-3-8b"}; }

int64_t LlamaGgufRowToHuggingFaceRow(int64_t gguf_row, int64_t heads, int64_t head_dim) {
  (void)heads;
  // llama.cpp's converter reshapes each head's rows as (2, head_dim/2) and swaps the axes:
  // HF row h*d + j*(d/2) + i lands at GGUF row h*d + 2i + j.
  const int64_t head = gguf_row / head_dim;
  const int64_t within = gguf_row % head_dim;
  const int64_t i = within / 2;
  const int64_t j = within % 2;
  return head * head_dim + j * (head_dim / 2) + i;
}

void DummyTensorRow(const ModelConfig& config, uint64_t seed, const ExpectedTensor& tensor,
                    int64_t row, float* out) {
  const int64_t cols = tensor.shape[0];
  const std::string_view name = tensor.name;
  auto ends_with = [&](std::string_view suffix) {
    return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
  };
  if (ends_with("norm.weight")) {
    for (int64_t c = 0; c < cols; ++c) out[c] = 1.0f;
    return;
  }
  // Uniform on [-a, a] has standard deviation a / sqrt(3).
  double std_dev;
  if (ends_with(".bias")) {
    std_dev = 0.02;
  } else if (name == "token_embd.weight" || name == "output.weight") {
    std_dev = 1.0 / std::sqrt(static_cast<double>(config.hidden_size));
  } else {
    std_dev = 1.0 / std::sqrt(static_cast<double>(cols));  // fan_in
  }
  const float amplitude = static_cast<float>(std_dev * std::sqrt(3.0));
  uint64_t state = seed ^ Fnv1a(name);
  state ^= SplitMix64(state) + static_cast<uint64_t>(row) * 0xd1342543de82ef95ull;
  for (int64_t c = 0; c < cols; ++c) {
    // 24 random bits -> [-1, 1).
    const float unit = static_cast<float>(SplitMix64(state) >> 40) * (2.0f / 16777216.0f) - 1.0f;
    out[c] = amplitude * unit;
  }
}

absl::Status WriteDummyModel(const DummyModelOptions& options) {
  ModelConfig config = options.config;
  TANDEM_RETURN_IF_ERROR(ValidateConfig(config, "model create"));
  if (!IsWritableDType(options.dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("model create: cannot write weights as ",
                                                   DTypeName(options.dtype),
                                                   "; expected f32, f16, bf16 or q8_0"));
  }
  if (options.format == ModelFormat::kSafetensors && options.dtype == DType::kQ8_0) {
    return absl::InvalidArgumentError(
        "model create: safetensors holds f32, f16 or bf16 weights; use --format gguf for q8_0");
  }
  for (const ExpectedTensor& tensor : ExpectedTensors(config)) {
    if (!tensor.is_vector && tensor.shape[0] % BlockElements(options.dtype) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model create: tensor '", tensor.name, "' has rows of ", tensor.shape[0],
                       " elements, not a multiple of the ", DTypeName(options.dtype),
                       " block size ", BlockElements(options.dtype),
                       "; choose dimensions that are multiples of ", BlockElements(options.dtype)));
    }
  }
  if (options.out.empty()) return absl::InvalidArgumentError("model create: no output path");
  TANDEM_ASSIGN_OR_RETURN(VocabSpec vocab, DemoVocab(static_cast<int32_t>(config.vocab_size)));
  config.bos_id = vocab.bos_id;
  config.eos_id = vocab.eos_id;
  if (config.name.empty())
    config.name = absl::StrCat("tandem-dummy-", ArchitectureName(config.architecture));
  if (options.format == ModelFormat::kGguf) return WriteGgufModel(options, config, vocab);
  return WriteSafetensorsModel(options, config, vocab);
}

}  // namespace tandem::model
