// libFuzzer target: the safetensors header parser on arbitrary bytes must return errors, never
// crash or read outside the buffer. The input also feeds the config.json parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/model_config.h"
#include "model/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)tandem::model::ParseSafetensors(data, size, "fuzz.safetensors");
  (void)tandem::model::ConfigFromHuggingFaceJson(
      std::string_view(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  return 0;
}
