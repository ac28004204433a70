// The weights of the one transformer, loaded from any TensorSource through a family's
// tensor names and validated, as the parallel layer types of this rank's shard. Each
// tensor is read into the neutral form (kernels::HostMatrix: row-major, in its
// checkpoint precision) and handed to the backend, which packs it into its own layout
// on its own device; the neutral copy is dropped at once.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "models/model_spec.h"
#include "models/parallel_layers.h"
#include "models/safetensors.h"
#include "models/sharding.h"

namespace tessera::models {

struct Norm {
  std::unique_ptr<kernels::Buffer> weight;  // [hidden] floats; null: no norm there
  std::unique_ptr<kernels::Buffer> bias;    // LayerNorm only; null otherwise
  int64_t dim = 0;
  size_t bytes() const;
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

class WeightCacheWrite;

struct ModelWeights {
  VocabParallelEmbedding embedding;
  std::unique_ptr<kernels::Weight> position_embedding;  // [max_positions, hidden] f32, learned positions only
  Norm final_norm;
  ParallelLmHead lm_head;  // a copy of the embedding's slice when tied
  std::vector<LayerWeights> layers;
  // The packed-weight cache file being written from these weights after their load
  // (models/weight_cache.h), or null. Last, so it ends (waits) before they are freed.
  std::unique_ptr<WeightCacheWrite> cache_write;

  ModelWeights();
  ~ModelWeights();
  ModelWeights(ModelWeights&&) noexcept;
  ModelWeights& operator=(ModelWeights&&) noexcept;

  size_t bytes() const;  // resident bytes of everything above
};

class PackedWeightReader;
class PackedWeightWriter;

// The packed-weight cache's part in a load (models/weight_cache.h): the packed weights
// are read from `from` instead of the checkpoint, or packed and appended to `to`.
struct PackedWeightIo {
  PackedWeightReader* from = nullptr;
  PackedWeightWriter* to = nullptr;
};

// Which weights LoadWeights packs, in which order and from which rows: part of the
// packed-weight cache's key. Bump it when that changes.
inline constexpr int kPackedWeightOrderVersion = 1;

// Loads and validates every tensor the spec needs, reading only `shard`'s slices, onto
// `backend`: a missing tensor or a wrong shape is INVALID_ARGUMENT naming the tensor.
// `on_progress` (may be empty) is told after each weight: checkpoint bytes done, of
// the total this shard loads.
absl::StatusOr<ModelWeights> LoadWeights(const ModelSpec& spec, const TensorSource& source, const ShardLayout& shard,
                                         kernels::Backend& backend,
                                         const std::function<void(int64_t done, int64_t total)>& on_progress = {},
                                         PackedWeightIo cache = {});

}  // namespace tessera::models
