// The layer types that own tensor and expert parallelism (as in vLLM's linear.py):
// each holds its rank's shard and issues its own collective; the model's forward pass
// only calls them. With one rank (null communicators) they run unsharded with no
// communication at all.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "common/aligned_buffer.h"
#include "common/thread_pool.h"
#include "kernels/matmul.h"
#include "kernels/ops.h"
#include "parallel/communicator.h"

namespace tessera::models {

struct Linear {
  kernels::PackedMatrix weight;  // [out, in]
  std::vector<float> bias;       // [out], empty when the layer has none
  const float* bias_or_null() const { return bias.empty() ? nullptr : bias.data(); }
  size_t bytes() const { return weight.bytes() + bias.size() * sizeof(float); }
};

// What every layer needs at run time.
struct LayerContext {
  ThreadPool* pool = nullptr;
  kernels::MatmulOptions matmul;
  parallel::Communicator* tp = nullptr;   // the tensor-parallel group; null: unsharded
  parallel::Communicator* moe = nullptr;  // every rank of the replica (MoE combine); null: tp
};

// Buffers the layers reuse across steps (owned by the model; never shrink).
struct LayerScratch {
  AlignedBuffer partial;  // [rows, hidden] a row-parallel output before its all-reduce
  AlignedBuffer moe_in, moe_out, moe_mlp, moe_act;
  std::vector<float> router_logits, route_weights, local_logits, gathered_logits;
  std::vector<int32_t> route_ids;
};

// y = x · W[rows of this rank]ᵀ + b: a slice of the output features; no communication.
class ColumnParallelLinear {
 public:
  Linear linear;
  int64_t out_features() const { return linear.weight.rows; }
  void Forward(const float* x, int64_t rows, int64_t x_stride, float* y, int64_t y_stride,
               const LayerContext& ctx) const;
};

// The fused q|k|v projection of this rank's query heads and the KV heads they read
// (split across ranks, or replicated when there are fewer KV heads than ranks).
class QKVParallelLinear : public ColumnParallelLinear {
 public:
  int64_t q_size = 0;   // this rank's query heads x head_dim
  int64_t kv_size = 0;  // this rank's KV heads x head_dim
};

// residual += all-reduce(x[:, columns of this rank] · W[:, columns]ᵀ) + b. The bias
// is added once, after the reduction.
class RowParallelLinear {
 public:
  Linear linear;
  absl::Status AddInto(float* residual, const float* x, int64_t rows, int64_t x_stride, const LayerContext& ctx,
                       LayerScratch& scratch) const;
};

// Token embeddings of this rank's vocabulary slice; other tokens contribute zeros and
// one all-reduce completes every row.
class VocabParallelEmbedding {
 public:
  DType dtype = DType::kF32;
  AlignedBuffer table;  // [rows, hidden], vocabulary ids [row0, row0 + rows)
  int64_t rows = 0, row0 = 0, hidden = 0;
  absl::Status Lookup(std::span<const int32_t> tokens, float* x, const LayerContext& ctx) const;
  size_t bytes() const { return table.size(); }
};

// Logits of this rank's vocabulary slice, gathered from every rank into full rows.
class ParallelLmHead {
 public:
  Linear linear;       // [vocabulary slice, hidden]
  int64_t vocab = 0;   // the full vocabulary
  absl::Status Forward(const float* h, int64_t rows, int64_t hidden, std::vector<float>* logits,
                       const LayerContext& ctx, LayerScratch& scratch) const;
};

// Mixtral's sparse MoE with expert parallelism: every rank computes the router
// (softmax over all experts, top-k renormalised as HF), runs its tensor-parallel slice
// of the experts it holds on the tokens routed to them (grouped by expert,
// models/moe_routing.h), and one all-reduce over the whole replica sums the weighted
// outputs into the residual.
class ExpertParallelMoe {
 public:
  Linear router;                 // [experts, hidden], on every rank
  std::vector<Linear> gate_up;   // [experts]; empty for experts other ranks hold
  std::vector<Linear> down;
  std::vector<bool> held;        // which experts this rank runs
  int experts_per_token = 2;
  int64_t inner = 0;             // this rank's slice of the intermediate size
  kernels::Activation activation = kernels::Activation::kSilu;
  absl::Status AddInto(float* residual, const float* h, int64_t rows, int64_t hidden, const LayerContext& ctx,
                       LayerScratch& scratch) const;
};

}  // namespace tessera::models
