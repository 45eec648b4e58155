// `tandem profile`: measure the engine's latency profile (prefill time against uncached prompt
// tokens, decode step time against batch size and context) and write it as JSON
// (docs/latency-profile.md, format in docs/latency-profile-format.md).
//
//   tandem profile --model model.gguf --out profile.json
//   tandem profile --model random:qwen2.5-0.5b:bf16 --threads 2 --out qwen.json
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/env.h"
#include "core/latency_profile.h"
#include "core/status.h"
#include "engine/model_loader.h"
#include "engine/profiler.h"

namespace tandem::cli {
namespace {

struct ProfileCommandOptions {
  std::string model;
  std::string out;
  int threads = 0;
  int repeats = 3;
  std::vector<int64_t> prefill_tokens = {16, 64, 128, 256, 512, 1024};
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> contexts = {128, 512, 2048};
  std::string kv_dtype = "auto";
  bool quiet = false;
};

int RunProfile(const CLI::App* command, const ProfileCommandOptions& o) {
  absl::Status required = RequireOptions(command, {"model", "out"});
  if (!required.ok()) return ReportError(command, required);
  auto loaded = engine::LoadEngineModel(o.model);
  if (!loaded.ok()) return ReportError(command, loaded.status());
  auto kv_type = engine::ParseKvTypeOption(o.kv_dtype);
  if (!kv_type.ok()) return ReportError(command, Annotate(kv_type.status(), "--kv-dtype"));
  engine::ProfileOptions options;
  options.threads = o.threads;
  options.kv_type = *kv_type;
  options.repeats = o.repeats;
  options.prefill_tokens = o.prefill_tokens;
  options.batch_sizes = o.batch_sizes;
  options.contexts = o.contexts;
  if (!o.quiet) {
    options.progress = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };
  }
  auto profile = engine::MeasureLatencyProfile(loaded->model, options);
  if (!profile.ok()) return ReportError(command, profile.status());
  absl::Status written = WriteLatencyProfile(Env::Default(), o.out, *profile);
  if (!written.ok()) return ReportError(command, written);
  std::fprintf(stderr, "wrote %s: %zu prefill and %zu decode points\n", o.out.c_str(),
               profile->prefill.size(), profile->decode.size());
  return 0;
}

void RegisterProfile(CLI::App& root) {
  CLI::App* profile = root.add_subcommand(
      "profile", "Measure prefill and decode latency of a model on this machine");
  auto o = std::make_shared<ProfileCommandOptions>();
  profile->add_option("--model", o->model,
                      "Model file (GGUF), Hugging Face folder, or random:<shape>[:<dtype>]");
  profile->add_option("--out", o->out, "Where to write the profile (JSON)");
  profile->add_option("--threads", o->threads, "Engine threads (0 = one per core)");
  profile->add_option("--kv-dtype", o->kv_dtype,
                      "KV cache element type: auto (bf16 unless the weights are f32), f32, bf16");
  profile->add_option("--repeats", o->repeats, "Runs per point (the median is kept)");
  profile->add_option("--prefill-tokens", o->prefill_tokens, "Prompt lengths to time, e.g. 64,512")
      ->delimiter(',');
  profile->add_option("--batch-sizes", o->batch_sizes, "Decode batch sizes to time, e.g. 1,8,32")
      ->delimiter(',');
  profile->add_option("--contexts", o->contexts, "Decode context lengths per sequence")
      ->delimiter(',');
  profile->add_flag("--quiet", o->quiet, "No progress lines");
  SetAction(profile, [profile, o]() -> int { return RunProfile(profile, *o); });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterProfile);
}  // namespace tandem::cli
