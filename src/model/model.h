// A loaded model: its config, its vocabulary and a table of tensors viewing the memory-mapped
// model file(s), which the Model owns.
//
// Sources: a `.gguf` file (v2 or v3), or a Hugging Face folder with `config.json`,
// `model.safetensors` or sharded `model-0000x-of-0000y.safetensors` +
// `model.safetensors.index.json`, and `tokenizer.json` (+ `tokenizer_config.json`).
//
// Tensors are named with the GGUF names whatever the source (Hugging Face names are mapped):
//   token_embd.weight, output_norm.weight, output.weight (absent when embeddings are tied),
//   blk.{i}.attn_norm.weight, blk.{i}.attn_{q,k,v,output}.weight, blk.{i}.attn_{q,k,v}.bias
//   (qwen2), blk.{i}.attn_{q,k}_norm.weight (qwen3), blk.{i}.ffn_norm.weight,
//   blk.{i}.ffn_{gate,up,down}.weight.
//
// Shapes are in GGUF order: shape[0] is the contiguous (fastest-varying) dimension. A weight
// matrix has shape {in_features, out_features}: each of its `rows()` (= out_features) rows holds
// `cols()` (= in_features) contiguous elements, i.e. row = output feature, the layout both GGUF
// and Hugging Face ([out, in] row-major) use. token_embd is {hidden, vocab}: one row per token.
//
// Q and K of Llama GGUF files are stored with rows permuted for interleaved RoPE, as llama.cpp's
// converter writes them; `config().rope_style` says which pairing the tensors need.
//
//   TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, LoadModel("qwen.gguf"));
//   TANDEM_ASSIGN_OR_RETURN(const TensorView* wq, model->GetTensor("blk.0.attn_q.weight"));
//   std::vector<float> row(wq->cols());
//   TANDEM_RETURN_IF_ERROR(DequantizeRow(wq->dtype, wq->row(5), wq->cols(), row.data()));
//
// Thread-safety: immutable after LoadModel; any number of threads may read it. Tensor data
// stays valid as long as the Model lives.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "model/dtype.h"
#include "model/model_config.h"
#include "model/vocab.h"

namespace tandem::model {

class MappedFile;
class Tokenizer;

// A non-owning view of one tensor's bytes in the model file's mapping.
struct TensorView {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // GGUF order: shape[0] contiguous
  const uint8_t* data = nullptr;
  uint64_t size_bytes = 0;

  int64_t elements() const;
  // shape[0] (1 for a scalar) and the product of the other dimensions.
  int64_t cols() const { return shape.empty() ? 1 : shape[0]; }
  int64_t rows() const { return cols() == 0 ? 0 : elements() / cols(); }
  int64_t row_bytes() const { return ByteSize(dtype, cols()); }
  const uint8_t* row(int64_t r) const { return data + r * row_bytes(); }
  // "[896, 151936]"
  std::string ShapeString() const;
};

enum class ModelFormat { kGguf, kSafetensors };

class Model {
 public:
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  ModelFormat format() const { return format_; }
  // The .gguf file or the folder given to LoadModel.
  const std::string& path() const { return path_; }

  // The vocabulary from GGUF metadata (tokenizer.ggml.*), or the one parsed from tokenizer.json
  // of a folder; nullopt when the model carries none.
  const std::optional<VocabSpec>& vocab() const { return vocab_; }
  // Raw tokenizer.json / tokenizer_config.json text of a folder (empty for GGUF).
  const std::string& tokenizer_json() const { return tokenizer_json_; }
  const std::string& tokenizer_config_json() const { return tokenizer_config_json_; }
  // The chat template the model carries (GGUF tokenizer.chat_template or tokenizer_config.json
  // chat_template); empty when none.
  const std::string& chat_template() const { return chat_template_; }

  // Builds the model's tokenizer (from the GGUF vocabulary or tokenizer.json).
  absl::StatusOr<std::unique_ptr<Tokenizer>> MakeTokenizer() const;

  // All tensors in file order.
  const std::vector<TensorView>& tensors() const { return tensors_; }
  // nullptr when absent.
  const TensorView* FindTensor(std::string_view name) const;
  // NotFound naming the file and the tensor when absent.
  absl::StatusOr<const TensorView*> GetTensor(std::string_view name) const;

  // Drops the pages of [first, first + bytes) (tensor bytes in one of the model's files) from
  // this process; later reads fault them in again from the file (MappedFile::Release). No
  // effect on bytes the model does not hold in a file mapping.
  void ReleasePages(const void* first, uint64_t bytes) const;

  // Sum of the tensors' elements.
  int64_t ParameterCount() const;
  // Sum of the tensors' bytes.
  uint64_t TensorBytes() const;
  // Human-readable summary of the GGUF metadata keys (key = value, arrays shortened); empty for
  // folders.
  const std::vector<std::pair<std::string, std::string>>& metadata_summary() const {
    return metadata_summary_;
  }

 private:
  friend class ModelBuilder;
  Model();

  ModelConfig config_;
  ModelFormat format_ = ModelFormat::kGguf;
  std::string path_;
  std::optional<VocabSpec> vocab_;
  std::string tokenizer_json_;
  std::string tokenizer_config_json_;
  std::string chat_template_;
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
  std::vector<std::pair<std::string, std::string>> metadata_summary_;
  std::vector<std::unique_ptr<MappedFile>> files_;
};

struct LoadOptions {
  // Show a progress bar on stderr while checking large files, when stderr is a terminal and the
  // model is over `progress_min_bytes`.
  bool progress = true;
  uint64_t progress_min_bytes = 256ull << 20;
  // Read every tensor once while loading (faults the pages in and finds unreadable files early);
  // on by default when `progress` shows a bar. Off: pages are read on first use.
  bool prefetch = false;
};

// Opens a .gguf file or a Hugging Face folder. Every error names the file and the tensor or key
// and says what was expected: wrong magic, truncation, offsets past the end, overlapping
// tensors, byte sizes that do not match dtype x shape, unsupported tensor types or
// architectures, missing or misshapen tensors, malformed JSON.
absl::StatusOr<std::unique_ptr<Model>> LoadModel(const std::string& path,
                                                 const LoadOptions& options = {});

// The name a model is served under (the OpenAI `model` field) when none is configured, the same
// for the router and every worker: "random-<shape>" for `random:<shape>[:...]`, else the file
// or folder name without its extension ("models/demo.gguf" -> "demo").
std::string DefaultServedModelName(std::string_view reference);

// The tensors a model of `config` must have, with their GGUF-order shapes; used to check loaded
// models and by the writer.
struct ExpectedTensor {
  std::string name;
  std::vector<int64_t> shape;
  bool is_vector = false;  // norms and biases (kept F32 by the writer)
};
std::vector<ExpectedTensor> ExpectedTensors(const ModelConfig& config);

// Maps a Hugging Face tensor name ("model.layers.3.self_attn.q_proj.weight") to its GGUF name
// ("blk.3.attn_q.weight"); nullopt for names Tandem does not use.
std::optional<std::string> HuggingFaceToGgufName(std::string_view hf_name);
// The inverse, for the writer.
std::string GgufToHuggingFaceName(std::string_view gguf_name);

}  // namespace tandem::model
