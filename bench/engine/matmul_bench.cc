// MatMul speed per weight type, path and batch size on the shapes of a real model, to choose
// between kernels (the engine benchmark shows their effect end to end).
//
//   matmul_bench --type q8_0 --threads 1 --rows 4864 --cols 896 --n 1,4,32,512
//
// Prints one line per (path, n): milliseconds per call (best of --repeats), GFLOP/s and weight
// GB/s.
#include <time.h>
#include <algorithm>

#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "engine/kernels.h"
#include "engine/thread_pool.h"
#include "engine/weight_types.h"

namespace tandem::engine {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU seconds of the whole process (all pool threads): on a machine shared with other work this
// stays close to the cost of the call when the wall clock does not.
double CpuNow() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int Run(int argc, char** argv) {
  CLI::App app("Tandem MatMul micro-benchmark");
  std::string type_name = "q8_0";
  int threads = 1, repeats = 20, copies = 1;
  int64_t rows = 4864, cols = 896;
  std::vector<int64_t> batch = {1, 2, 4, 8, 16, 32, 512};
  app.add_option("--type", type_name, "f32 | bf16 | f16 | q8_0");
  app.add_option("--threads", threads, "pool threads");
  app.add_option("--rows", rows, "weight rows (outputs)");
  app.add_option("--cols", cols, "weight columns (inputs)");
  app.add_option("--n", batch, "input rows per call")->delimiter(',');
  app.add_option("--repeats", repeats, "calls per measurement (best is shown)");
  app.add_option("--copies", copies,
                 "distinct copies of the matrix, multiplied in turn: with copies larger than the "
                 "last-level cache together, every call reads its weights from memory, as in a "
                 "decode step (times are per call)")
      ->check(CLI::Range(1, 4096));
  CLI11_PARSE(app, argc, argv);
  auto type = ParseWeightType(type_name);
  if (!type.ok()) {
    std::fprintf(stderr, "matmul_bench: %s\n", type.status().ToString().c_str());
    return 2;
  }
  std::mt19937 random(1);
  std::uniform_real_distribution<float> uniform(-1, 1);
  std::vector<uint8_t> bytes(rows * WeightRowBytes(*type, cols));
  std::vector<float> row(cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = uniform(random);
    if (!QuantizeRow(*type, row.data(), cols, bytes.data() + r * WeightRowBytes(*type, cols)).ok())
      return 1;
  }
  const int64_t matrix_bytes = static_cast<int64_t>(bytes.size());
  bytes.resize(matrix_bytes * copies);
  for (int c = 1; c < copies; ++c)
    std::copy_n(bytes.begin(), matrix_bytes, bytes.begin() + c * matrix_bytes);
  std::vector<WeightMatrix> matrices;
  for (int c = 0; c < copies; ++c) {
    matrices.push_back(
        {.data = bytes.data() + c * matrix_bytes, .type = *type, .rows = rows, .cols = cols});
  }
  ThreadPool pool(threads);
  // MatMul and the low-precision path get the matrices as the engine holds them (PackWeights:
  // Q8_0 in the int8 kernel's tiles where it runs); the forced row-kernel and sgemm paths read
  // the file's layout.
  std::vector<PackedWeights> packed;
  std::vector<WeightMatrix> packed_matrices;
  for (const WeightMatrix& m : matrices) {
    auto one = PackWeights(pool, m);
    if (!one.ok()) {
      std::fprintf(stderr, "matmul_bench: %s\n", one.status().ToString().c_str());
      return 1;
    }
    packed.push_back(std::move(one).value());
    packed_matrices.push_back(packed.back().matrix);
  }
  struct Path {
    const char* name;
    void (*fn)(ThreadPool&, const WeightMatrix&, const float*, int64_t, float*);
    bool packed;
  };
  const Path paths[] = {{"matmul", MatMul, true},
                        {"low-precision", MatMulLowPrecision, true},
                        {"row-kernels", MatMulRowKernels, false},
                        {"gemm", MatMulGemm, false}};
  for (int64_t n : batch) {
    std::vector<float> x(n * cols), out(n * rows);
    for (float& v : x) v = uniform(random);
    for (const Path& path : paths) {
      if (n > 64 && std::string(path.name) == "row-kernels") continue;
      double best = 1e9, best_cpu = 1e9;
      const std::vector<WeightMatrix>& ms = path.packed ? packed_matrices : matrices;
      path.fn(pool, ms[0], x.data(), n, out.data());  // warm-up
      for (int i = 0; i < repeats; ++i) {
        const double start = Now(), cpu_start = CpuNow();
        for (const WeightMatrix& m : ms) path.fn(pool, m, x.data(), n, out.data());
        best = std::min(best, (Now() - start) / copies);
        best_cpu = std::min(best_cpu, (CpuNow() - cpu_start) / copies);
      }
      std::printf("%-14s n=%-4ld %9.3f ms %8.1f GFLOP/s %7.1f GB/s %9.3f cpu-ms\n", path.name,
                  long(n), best * 1e3, 2.0 * rows * cols * n / best / 1e9,
                  matrices[0].bytes() / best / 1e9, best_cpu * 1e3);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tandem::engine

int main(int argc, char** argv) { return tandem::engine::Run(argc, argv); }
