// libFuzzer target: arbitrary bytes as a chat template. Parsing must fail cleanly or give a
// template that renders (or fails cleanly) within the step and output limits.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "model/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 16)) return 0;
  auto t = tandem::model::ChatTemplate::Parse(
      std::string_view(reinterpret_cast<const char*>(data), size));
  if (!t.ok()) return 0;
  t->set_limits(/*max_steps=*/20000, /*max_output_bytes=*/1 << 20);
  nlohmann::json extra = {{"tools", {{{"name", "f"}, {"parameters", {{"x", 1}}}}}},
                          {"date_string", "1 Jan 2025"}};
  (void)t->Render({{"system", "sys"}, {"user", "Hello"}, {"assistant", " Hi "}, {"user", "Bye"}},
                  /*add_generation_prompt=*/true, "<s>", "</s>", extra);
  (void)t->Render({}, false, "", "");
  return 0;
}
