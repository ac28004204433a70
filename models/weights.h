// The weights of the one transformer, loaded from any TensorSource through a family's
// tensor names, validated, converted and packed for the matmul kernels.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "common/aligned_buffer.h"
#include "kernels/matmul.h"
#include "models/model_spec.h"
#include "models/safetensors.h"
#include "models/sharding.h"

namespace tessera::models {

struct Linear {
  kernels::PackedMatrix weight;  // [out, in]
  std::vector<float> bias;       // [out], empty when the layer has none
  const float* bias_or_null() const { return bias.empty() ? nullptr : bias.data(); }
};

struct Norm {
  std::vector<float> weight;
  std::vector<float> bias;  // LayerNorm only
};

struct LayerWeights {
  Norm attn_norm;
  Linear qkv;  // [q | k | v] rows
  Linear o;
  Norm mlp_norm;
  Linear gate_up;  // dense: [gate | up] when gated, fc otherwise
  Linear down;
  Linear router;   // MoE: [num_experts, hidden]
  std::vector<Linear> expert_gate_up;  // [num_experts]; empty matrices for experts other ranks hold
  std::vector<Linear> expert_down;
};

struct ModelWeights {
  DType embedding_dtype = DType::kF32;  // kF32 or kBF16
  AlignedBuffer token_embedding;        // [embedding_rows, hidden]: vocabulary rows from embedding_row0
  int64_t embedding_rows = 0;
  int64_t embedding_row0 = 0;
  std::vector<float> position_embedding;  // [max_positions, hidden], learned positions only
  Norm final_norm;
  Linear lm_head;  // [vocab slice, hidden]; a packed copy of the embedding slice when tied
  std::vector<LayerWeights> layers;

  size_t bytes() const;  // resident bytes of everything above
};

// Loads and validates every tensor the spec needs, reading only `shard`'s slices: a
// missing tensor or a wrong shape is INVALID_ARGUMENT naming the tensor.
absl::StatusOr<ModelWeights> LoadWeights(const ModelSpec& spec, const TensorSource& source, const ShardLayout& shard);

}  // namespace tessera::models
