// A model with random weights held in memory, for tests, benchmarks and profiling without a
// model file. Weights are drawn from a fixed-seed generator and scaled so activations stay O(1)
// through any number of layers.
//
//   TANDEM_ASSIGN_OR_RETURN(auto model, MakeRandomModel(config, WeightType::kBF16, /*seed=*/7));
//   TANDEM_ASSIGN_OR_RETURN(auto transformer,
//                           Transformer::Create(model->config, model->weights, &pool));
//
// Thread-safety: plain data after creation.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/transformer.h"

namespace tandem::engine {

struct RandomModel {
  TransformerConfig config;
  TransformerWeights weights;
  std::vector<std::vector<uint8_t>> storage;  // the bytes the weights point into
};

// Large matrices use `type`; norm weights and biases are F32. Embeddings are tied unless
// `untied_head`.
absl::StatusOr<std::unique_ptr<RandomModel>> MakeRandomModel(const TransformerConfig& config,
                                                             WeightType type, uint64_t seed,
                                                             bool untied_head = false);

}  // namespace tandem::engine
