// Feeds arbitrary bytes to ParseSpec and renders whatever parses: neither may crash, and every
// refusal must be an InvalidArgument with a message.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "deploy/render.h"
#include "deploy/spec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tandem::deploy::DeploymentSpec> spec =
      tandem::deploy::ParseSpec(text, "fuzz.yaml");
  if (!spec.ok()) {
    if (spec.status().code() != absl::StatusCode::kInvalidArgument ||
        spec.status().message().empty()) {
      std::abort();
    }
    return 0;
  }
  for (auto target : {tandem::deploy::RenderTarget::kGrove, tandem::deploy::RenderTarget::kLws,
                      tandem::deploy::RenderTarget::kKubernetes}) {
    (void)tandem::deploy::RenderManifests(*spec, target);
  }
  return 0;
}
