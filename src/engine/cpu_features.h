// Which instruction-set paths of the engine's kernels this CPU can run, detected once at run
// time (the binary is built for baseline x86-64; faster paths are compiled per function with
// target attributes and chosen here).
//
//   for (const std::string& path : EnabledIsaPaths()) std::cout << path << "\n";
//
// Thread-safety: detection runs once (thread-safe static); the result is immutable.
#pragma once

#include <string>
#include <vector>

namespace tandem::engine {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool f16c = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512bf16 = false;
  bool avx512vnni = false;
  bool avx_vnni = false;
};

// The detected features, possibly narrowed by the TANDEM_ISA environment variable
// ("scalar", "avx2" or "avx512") so that every path can be exercised on one machine.
const CpuFeatures& GetCpuFeatures();

// The kernel paths in use, best first, e.g. {"avx512-bf16", "avx512-vnni", "avx512", "avx2",
// "scalar"}; printed by `tandem version`.
std::vector<std::string> EnabledIsaPaths();

// Highest kernel tier in use.
enum class IsaTier { kScalar, kAvx2, kAvx512 };
IsaTier ActiveIsaTier();

}  // namespace tandem::engine
