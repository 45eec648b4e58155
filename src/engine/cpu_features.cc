#include "engine/cpu_features.h"

#include <cstdlib>
#include <string_view>

namespace tandem::engine {
namespace {

CpuFeatures Detect() {
  CpuFeatures features;
#if defined(__x86_64__)
  __builtin_cpu_init();
  features.avx2 = __builtin_cpu_supports("avx2");
  features.fma = __builtin_cpu_supports("fma");
  features.avx512f = __builtin_cpu_supports("avx512f");
  features.avx512bw = __builtin_cpu_supports("avx512bw");
  features.avx512vl = __builtin_cpu_supports("avx512vl");
  features.avx512vnni = __builtin_cpu_supports("avx512vnni");
#if defined(__clang__) && __clang_major__ < 15
  // clang 14's __builtin_cpu_supports does not know avx512bf16/avxvnni/f16c: read CPUID.
  {
    unsigned eax, ebx, ecx, edx;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(7), "c"(1));
    features.avx512bf16 = (eax >> 5) & 1;
    features.avx_vnni = (eax >> 4) & 1;
    __asm__("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
    features.f16c = (ecx >> 29) & 1;
  }
#else
  features.avx512bf16 = __builtin_cpu_supports("avx512bf16");
  features.avx_vnni = __builtin_cpu_supports("avxvnni");
  features.f16c = __builtin_cpu_supports("f16c");
#endif
#endif
  const char* override_isa = std::getenv("TANDEM_ISA");
  if (override_isa != nullptr) {
    std::string_view isa(override_isa);
    if (isa == "scalar") {
      features = CpuFeatures{};
    } else if (isa == "avx2") {
      features.avx512f = features.avx512bw = features.avx512vl = false;
      features.avx512bf16 = features.avx512vnni = false;
    }
  }
  return features;
}

}  // namespace

const CpuFeatures& GetCpuFeatures() {
  static const CpuFeatures features = Detect();
  return features;
}

IsaTier ActiveIsaTier() {
  const CpuFeatures& f = GetCpuFeatures();
  if (f.avx512f && f.avx512bw && f.avx512vl && f.fma && f.f16c) return IsaTier::kAvx512;
  if (f.avx2 && f.fma && f.f16c) return IsaTier::kAvx2;
  return IsaTier::kScalar;
}

std::vector<std::string> EnabledIsaPaths() {
  std::vector<std::string> paths;
  const CpuFeatures& f = GetCpuFeatures();
  IsaTier tier = ActiveIsaTier();
  if (tier == IsaTier::kAvx512) {
    if (f.avx512bf16) paths.push_back("avx512-bf16");
    if (f.avx512vnni) paths.push_back("avx512-vnni");
    paths.push_back("avx512");
  }
  if (tier >= IsaTier::kAvx2) paths.push_back("avx2");
  paths.push_back("scalar");
  return paths;
}

}  // namespace tandem::engine
