// Model loading speed: writes a ~1.2 GB GGUF dummy model (TinyLlama-1.1B shape, Q8_0) to a
// temporary folder, then compares, with the file in the page cache:
//   - `cat FILE > /dev/null` (the baseline: the fastest way a program reads the file),
//   - LoadModel (mmap, header and metadata checks) followed by reading every tensor byte once
//     (a 64-bit XOR fold, and separately an XXH3 hash), so every page is really faulted in and
//     read,
//   - LoadModel alone (no tensor bytes read).
// Prints one JSON line per measurement and the ratio of load+read to cat throughput.
//
// Usage: model_load_bench [--dir DIR] [--keep] [--repeats N]
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "model/model.h"
#include "model/model_writer.h"
#include "xxhash.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// XOR of the file's 64-bit words (eight lanes so the compiler vectorizes it).
uint64_t Fold(const uint8_t* data, uint64_t size) {
  uint64_t lanes[8] = {};
  uint64_t i = 0;
  for (; i + 64 <= size; i += 64) {
    uint64_t words[8];
    std::memcpy(words, data + i, 64);
    for (int l = 0; l < 8; ++l) lanes[l] ^= words[l];
  }
  uint64_t out = 0;
  for (int l = 0; l < 8; ++l) out ^= lanes[l];
  for (; i < size; ++i) out ^= static_cast<uint64_t>(data[i]) << (8 * (i % 8));
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string dir;
  bool keep = false;
  int repeats = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--dir" && i + 1 < argc) {
      dir = argv[++i];
    } else if (arg == "--keep") {
      keep = true;
    } else if (arg == "--repeats" && i + 1 < argc) {
      repeats = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: model_load_bench [--dir DIR] [--keep] [--repeats N]\n");
      return 2;
    }
  }
  bool made_dir = false;
  if (dir.empty()) {
    char pattern[] = "/tmp/tandem-model-bench-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = pattern;
    made_dir = true;
  }
  const std::string path = dir + "/bench.gguf";

  tandem::model::ModelConfig config = *tandem::model::PresetConfig("tiny");
  config.vocab_size = 32000;
  config.hidden_size = 2048;
  config.intermediate_size = 5632;
  config.num_layers = 22;
  config.num_heads = 32;
  config.num_kv_heads = 4;
  config.head_dim = 64;
  config.name = "bench-tinyllama-shape";
  auto start = Clock::now();
  absl::Status status = tandem::model::WriteDummyModel(
      {.config = config, .dtype = tandem::model::DType::kQ8_0, .seed = 1, .out = path});
  if (!status.ok()) {
    std::fprintf(stderr, "writing %s: %s\n", path.c_str(), status.ToString().c_str());
    return 1;
  }
  const double write_seconds = Seconds(start);
  const double bytes = static_cast<double>(fs::file_size(path));
  std::printf(
      "{\"name\": \"write (dummy model, Q8_0)\", \"bytes\": %.0f, \"seconds\": %.3f, "
      "\"mb_per_s\": %.1f}\n",
      bytes, write_seconds, bytes / 1e6 / write_seconds);

  const std::string cat = absl::StrFormat("cat '%s' > /dev/null", path);
  if (std::system(cat.c_str()) != 0) return 1;  // warm the page cache

  std::vector<double> cat_s, load_s, xxh_s, rehash_s, parse_s;
  uint64_t checksum = 0;
  for (int r = 0; r < repeats; ++r) {
    start = Clock::now();
    if (std::system(cat.c_str()) != 0) return 1;
    cat_s.push_back(Seconds(start));

    // Load, then read every byte of every tensor once (a 64-bit XOR fold: as cheap a use of
    // the bytes as cat's copy, so the comparison measures loading, not the checksum).
    start = Clock::now();
    absl::StatusOr<std::unique_ptr<tandem::model::Model>> model =
        tandem::model::LoadModel(path, {.progress = false});
    if (!model.ok()) {
      std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
      return 1;
    }
    uint64_t sum = 0;
    for (const tandem::model::TensorView& t : (*model)->tensors())
      sum ^= Fold(t.data, t.size_bytes);
    load_s.push_back(Seconds(start));
    // The same pass again over pages already mapped: the reading alone, no page faults.
    start = Clock::now();
    uint64_t again = 0;
    for (const tandem::model::TensorView& t : (*model)->tensors())
      again ^= Fold(t.data, t.size_bytes);
    rehash_s.push_back(Seconds(start));
    if (again != sum || (r > 0 && sum != checksum)) {
      std::fprintf(stderr, "checksums differ between passes\n");
      return 1;
    }
    checksum = sum;
    model->reset();

    // With XXH3 instead (a real hash; slower than memory on one core).
    start = Clock::now();
    model = tandem::model::LoadModel(path, {.progress = false});
    if (!model.ok()) return 1;
    uint64_t hash = 0;
    for (const tandem::model::TensorView& t : (*model)->tensors()) {
      hash ^= XXH3_64bits(t.data, t.size_bytes);
    }
    xxh_s.push_back(Seconds(start));
    model->reset();

    start = Clock::now();
    model = tandem::model::LoadModel(path, {.progress = false});
    parse_s.push_back(Seconds(start) + (hash == 0 ? 1e-12 : 0));
  }
  const double gb = bytes / 1e9;
  const double cat_m = Median(cat_s), load_m = Median(load_s), xxh_m = Median(xxh_s);
  const double rehash_m = Median(rehash_s), parse_m = Median(parse_s);
  auto line = [&](const char* name, double seconds) {
    std::printf("{\"name\": \"%s\", \"seconds\": %.4f, \"gb_per_s\": %.2f}\n", name, seconds,
                gb / seconds);
  };
  line("cat > /dev/null (warm)", cat_m);
  line("LoadModel + read every tensor byte (warm)", load_m);
  line("LoadModel + XXH3 of every tensor (warm)", xxh_m);
  line("read every tensor byte, pages already mapped", rehash_m);
  std::printf(
      "{\"name\": \"LoadModel alone (headers, metadata, tensor table)\", \"seconds\": "
      "%.4f}\n",
      parse_m);
  std::printf(
      "{\"name\": \"ratio\", \"load_vs_cat\": %.2f, \"load_xxh3_vs_cat\": %.2f, "
      "\"target\": 0.8}\n",
      cat_m / load_m, cat_m / xxh_m);
  std::printf("\nmodel %.2f GB (%s, Q8_0), median of %d warm runs:\n", gb,
              tandem::model::DescribeConfig(config).c_str(), repeats);
  std::printf("| what | seconds | GB/s |\n|---|---:|---:|\n");
  std::printf("| cat FILE > /dev/null | %.3f | %.2f |\n", cat_m, gb / cat_m);
  std::printf("| LoadModel + read every tensor byte | %.3f | %.2f |\n", load_m, gb / load_m);
  std::printf("| LoadModel + XXH3 of every tensor | %.3f | %.2f |\n", xxh_m, gb / xxh_m);
  std::printf("| read every tensor byte again (already mapped) | %.3f | %.2f |\n", rehash_m,
              gb / rehash_m);
  std::printf("| LoadModel alone (parse and check) | %.4f | - |\n", parse_m);
  std::printf("load / cat throughput: %.2f (target >= 0.8); with XXH3: %.2f\n", cat_m / load_m,
              cat_m / xxh_m);
  if (!keep) {
    fs::remove(path);
    if (made_dir) fs::remove(dir);
  }
  return 0;
}
