// Deterministic random numbers: workloads, simulations, sampling, test data.
//
// std::<random> distributions may produce different sequences on different standard libraries,
// so workloads, simulations and the engine's sampling use this generator (xoshiro256**, seeded by
// splitmix64) and these hand-written distributions: the same seed gives the same workload
// everywhere.
//
//   Random rng(42);
//   double gap = rng.Exponential(10.0);       // mean 1/10
//   double length = rng.LogNormal(6.9, 0.5);
//
// Thread-safety: not thread-safe; use one generator per thread.
#pragma once

#include <cstdint>

namespace tandem {

class Random {
 public:
  explicit Random(uint64_t seed);

  uint64_t Next();
  // Uniform in [0, 1).
  double Uniform();
  // Uniform integer in [low, high] (inclusive).
  int64_t UniformInt(int64_t low, int64_t high);
  double Normal(double mean, double stddev);
  double LogNormal(double mu, double sigma);
  // Exponential with the given rate (mean 1/rate).
  double Exponential(double rate);
  // Gamma(shape, scale), Marsaglia–Tsang.
  double Gamma(double shape, double scale);

 private:
  uint64_t state_[4];
  bool has_spare_normal_ = false;
  double spare_normal_ = 0;
};

}  // namespace tandem
