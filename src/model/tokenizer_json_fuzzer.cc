// libFuzzer target: arbitrary bytes as a Hugging Face tokenizer.json (optionally followed by a
// NUL byte and a tokenizer_config.json). Parsing must fail cleanly or give a tokenizer that
// encodes and decodes without crashing.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string_view config;
  if (const size_t nul = input.find('\0'); nul != std::string_view::npos) {
    config = input.substr(nul + 1);
    input = input.substr(0, nul);
  }
  auto tok = tandem::model::Tokenizer::FromHuggingFaceJson(input, config);
  if (!tok.ok()) return 0;
  for (std::string_view text :
       {std::string_view("Hello world!  12345 \xe4\xb8\xad\xf0\x9f\x98\x80"),
        std::string_view("<s><|im_start|>a\n\n b"), input.substr(0, 64)}) {
    for (bool special : {false, true}) {
      const auto ids = (*tok)->Encode(text, special, special);
      (void)(*tok)->Decode(ids);
      tandem::model::StreamDecoder stream(**tok);
      for (int32_t id : ids) (void)stream.Feed(id);
      (void)stream.Flush();
    }
  }
  (void)(*tok)->Summary();
  return 0;
}
