// The layer types that own tensor and expert parallelism (as in vLLM's linear.py):
// each holds its rank's shard on the model's backend (kernels/backend.h) and issues its
// own collective; the forward pass (models/model.h) only calls them. They are the only
// place collectives are issued, on any device: a communicator that takes host buffers
// gets device tensors staged through the host. With one rank (null communicators) they
// run unsharded with no communication at all.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "parallel/communicator.h"

namespace tessera::models {

struct Linear {
  std::unique_ptr<kernels::Weight> weight;  // [out, in]
  std::unique_ptr<kernels::Buffer> bias;    // [out] floats; null when the layer has none
  kernels::LinearRef ref() const { return {weight.get(), bias ? bias->as<float>() : nullptr}; }
  int64_t out_features() const { return weight->rows(); }
  size_t bytes() const;
};

// What every layer needs at run time.
struct LayerContext {
  kernels::Backend* backend = nullptr;
  parallel::Communicator* tp = nullptr;   // the tensor-parallel group; null: unsharded
  parallel::Communicator* moe = nullptr;  // every rank of the replica (MoE combine); null: tp
};

// Buffers the layers reuse across steps (never shrink), on the backend's device, and
// their host copies for communicators that take host memory.
struct LayerScratch {
  explicit LayerScratch(kernels::Backend& backend);
  std::unique_ptr<kernels::Buffer> partial;  // [rows, hidden] an output before its all-reduce
  std::unique_ptr<kernels::Buffer> router_logits, route_ids, route_weights;
  std::unique_ptr<kernels::Buffer> moe_rows, moe_slots, moe_weights, moe_in, moe_mlp, moe_act, moe_out;
  std::unique_ptr<kernels::Buffer> logits, gathered_logits, full_logits;
  std::vector<float> staging, gathered_staging;
  std::vector<int32_t> host_ids;
  std::vector<float> host_weights;
};

// y = x · W[rows of this rank]ᵀ + b: a slice of the output features; no communication.
class ColumnParallelLinear {
 public:
  Linear linear;
  int64_t out_features() const { return linear.out_features(); }
  absl::Status Forward(const float* x, int64_t rows, float* y, const LayerContext& ctx) const;
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
  absl::Status AddInto(float* residual, const float* x, int64_t rows, const LayerContext& ctx,
                       LayerScratch& scratch) const;
};

// Token embeddings of this rank's vocabulary slice; other tokens contribute zeros and
// one all-reduce completes every row.
class VocabParallelEmbedding {
 public:
  std::unique_ptr<kernels::Weight> table;  // [rows, hidden], vocabulary ids [row0, row0 + rows)
  int64_t row0 = 0;
  // ids: [rows] on the backend's device.
  absl::Status Lookup(const int32_t* ids, int64_t rows, float* x, const LayerContext& ctx,
                      LayerScratch& scratch) const;
  size_t bytes() const { return table->bytes(); }
};

// Logits of this rank's vocabulary slice, gathered from every rank into full rows.
class ParallelLmHead {
 public:
  Linear linear;       // [vocabulary slice, hidden]
  int64_t vocab = 0;   // the full vocabulary
  // [rows, vocab] on the backend's device, valid until the next call.
  absl::StatusOr<float*> Forward(const float* h, int64_t rows, const LayerContext& ctx, LayerScratch& scratch) const;
};

// Mixtral's sparse MoE with expert parallelism: every rank computes the router
// (softmax over all experts, top-k renormalised as HF), runs its tensor-parallel slice
// of the experts it holds on the tokens routed to them (grouped by expert,
// models/moe_routing.h), and one all-reduce over the whole replica sums the weighted
// outputs into the residual.
class ExpertParallelMoe {
 public:
  Linear router;                 // [experts, hidden], on every rank, exact activations
  std::vector<Linear> gate_up;   // [experts]; empty for experts other ranks hold
  std::vector<Linear> down;
  std::vector<bool> held;        // which experts this rank runs
  int experts_per_token = 2;
  bool renormalize = true;  // the top-k weights sum to 1 (ModelSpec::moe_renormalize)
  int64_t inner = 0;             // this rank's slice of the intermediate size
  kernels::Activation activation = kernels::Activation::kSilu;
  absl::Status AddInto(float* residual, const float* h, int64_t rows, int64_t hidden, const LayerContext& ctx,
                       LayerScratch& scratch) const;
};

}  // namespace tessera::models
