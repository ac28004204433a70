// The weights of the one transformer, loaded from any TensorSource through a family's
// tensor names, validated, converted and packed for the matmul kernels, as the
// parallel layer types of this rank's shard.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "models/model_spec.h"
#include "models/parallel_layers.h"
#include "models/safetensors.h"
#include "models/sharding.h"

namespace tessera::models {

struct Norm {
  std::vector<float> weight;
  std::vector<float> bias;  // LayerNorm only
};

struct LayerWeights {
  Norm attn_norm;
  QKVParallelLinear qkv;  // [q | k | v] rows of this rank's heads
  RowParallelLinear o;
  Norm mlp_norm;
  ColumnParallelLinear gate_up;  // dense: [gate | up] when gated, fc otherwise
  RowParallelLinear down;
  ExpertParallelMoe moe;         // MoE models instead of gate_up / down
};

struct ModelWeights {
  VocabParallelEmbedding embedding;
  std::vector<float> position_embedding;  // [max_positions, hidden], learned positions only
  Norm final_norm;
  ParallelLmHead lm_head;  // a copy of the embedding's slice when tied
  std::vector<LayerWeights> layers;

  size_t bytes() const;  // resident bytes of everything above
};

// Loads and validates every tensor the spec needs, reading only `shard`'s slices: a
// missing tensor or a wrong shape is INVALID_ARGUMENT naming the tensor.
absl::StatusOr<ModelWeights> LoadWeights(const ModelSpec& spec, const TensorSource& source, const ShardLayout& shard);

}  // namespace tessera::models
