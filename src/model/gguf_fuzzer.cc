// libFuzzer target: the GGUF parser and the metadata -> config/vocabulary mapping on arbitrary
// bytes must return errors, never crash, hang or allocate without bound.
#include <cstddef>
#include <cstdint>

#include "model/gguf.h"
#include "model/gguf_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<tandem::model::GgufFile> file = tandem::model::ParseGguf(data, size, "fuzz.gguf");
  if (!file.ok()) return 0;
  (void)tandem::model::ConfigFromGguf(*file, "fuzz.gguf");
  (void)tandem::model::VocabFromGguf(*file, "fuzz.gguf");
  for (const auto& [key, value] : file->metadata) (void)value.DebugString();
  return 0;
}
