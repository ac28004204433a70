// How a tensor-parallel rank's shard of the model is laid out (Megatron style).
//
// Query heads and the MLP's intermediate size are split evenly across ranks; KV heads
// are split too, or replicated (each rank keeps the one its query heads use) when
// there are fewer KV heads than ranks; the vocabulary is split in equal slices (the
// last one padded). Column-parallel layers (q/k/v, gate/up, the LM head) keep their
// rows of the split dimension; row-parallel layers (o, down) keep the matching
// columns and are followed by an all-reduce.
#pragma once

#include "absl/status/statusor.h"
#include "models/model_spec.h"

namespace tessera::models {

struct TensorParallel {
  int rank = 0;
  int size = 1;
};

// Expert parallelism (MoE models): expert e lives on expert-parallel rank
// e % size; within it, experts are also split over the tensor-parallel ranks.
struct ExpertParallel {
  int rank = 0;
  int size = 1;
};

struct ShardLayout {
  TensorParallel tp;
  ExpertParallel ep;
  int q_heads = 0, q_head0 = 0;    // this rank's query heads [q_head0, q_head0 + q_heads)
  int kv_heads = 0, kv_head0 = 0;  // this rank's KV heads
  int inner = 0, inner0 = 0;       // MLP intermediate slice
  int vocab = 0, vocab0 = 0;       // vocabulary slice (vocab rows; the last may pad)

  bool OwnsExpert(int expert) const { return expert % ep.size == ep.rank; }

  // INVALID_ARGUMENT when the model's head counts or sizes do not split over tp.size,
  // or ep.size > 1 for a model without experts (or with fewer experts than ranks).
  static absl::StatusOr<ShardLayout> For(const ModelSpec& spec, TensorParallel tp, ExpertParallel ep = {});
};

}  // namespace tessera::models
