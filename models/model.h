// Model: the one transformer that every family is a configuration of, running a
// flattened batch against a paged KV cache on a backend (kernels/backend.h): the CPU,
// or one CUDA GPU. This is the only forward pass; the backends supply its primitives
// and the parallel layer types (models/parallel_layers.h) its collectives.
//
// A forward step takes several sequences, each with its new tokens (a prefill chunk or
// one decode token), the number of tokens it already has in the cache and its block
// table. Their tokens are concatenated so every matmul sees the whole batch; attention
// walks each sequence's blocks. The caller (an engine or scheduler) owns the block
// tables and allocates the blocks before calling Forward.
//
// Thread-safety: Forward uses internal scratch buffers; call it from one thread at a
// time. The model owns its backend (and so the CPU thread pool).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kernels/attention.h"
#include "kernels/backend.h"
#include "kernels/matmul.h"
#include "kvstore/kv_pool.h"
#include "models/model_spec.h"
#include "models/kv_retention.h"
#include "models/pooling.h"
#include "models/rope.h"
#include "models/sharding.h"
#include "models/weight_cache.h"
#include "models/weights.h"
#include "parallel/communicator.h"

namespace tessera::models {

struct ModelOptions {
  // The device: CUDA device `cuda_device`, or the CPU when negative.
  int cuda_device = -1;
  // CPU threads for kernels, the caller included. 0: every core this process may use
  // (common/cpu_limit.h: its affinity mask, capped by its cgroup's CPU limit).
  int num_threads = 0;
  // Tensor parallelism: this process holds shard `tp.rank` of `tp.size`, and
  // `communicator` (size tp.size, not owned, must outlive the model) joins the shards.
  TensorParallel tp;
  parallel::Communicator* communicator = nullptr;
  // Expert parallelism: this process is expert-parallel rank `ep.rank` of `ep.size`;
  // `moe_communicator` spans all tp.size x ep.size ranks of the replica and sums the
  // MoE outputs (defaults to `communicator` when ep.size is 1).
  ExpertParallel ep;
  parallel::Communicator* moe_communicator = nullptr;
  // CPU matmul precision switches (bf16 activations for large batches by default).
  kernels::MatmulOptions matmul;
  // Told while weights load (from the loading thread, after each weight): checkpoint
  // bytes of this shard's tensors done so far, of `total`.
  std::function<void(int64_t done, int64_t total)> on_load_progress;
  // The packed-weight cache's folder (models/weight_cache.h); empty: none. Only Load
  // uses it (a model folder has an identity; tensors in memory have none).
  std::string weight_cache_dir;
  // Told, from another thread, when the cache file written after the load is complete
  // or failed (WeightCacheRequest::on_written).
  std::function<void(const WeightCacheUse&)> on_weight_cache_written;
};

// One sequence of a forward step.
struct SequenceInput {
  std::span<const int32_t> tokens;       // new tokens, at positions context_len...
  int64_t context_len = 0;               // tokens already in the cache
  std::span<const int32_t> block_table;  // covers context_len + tokens.size() tokens
  bool all_logits = false;               // logits of every new token, else only the last
  // kLast / kMean: no logits, but a pooled final hidden state: the last new token's,
  // or the sum over the new tokens (a caller pooling over several chunks adds the sums
  // and divides by the tokens: FinishEmbedding in models/generate.h).
  Pooling pooling = Pooling::kNone;
  // What it keeps and reads of its cache (models/kv_retention.h; rotary models only):
  // the caller releases the blocks between the sinks and the window, which its table
  // still lists but attention never reads.
  KvRetention retention;
};

// Checks a forward step before anything is written: the KV pool (`kv_layout`,
// `num_blocks`) is laid out as the model needs (`model_layout`), every sequence has
// new tokens inside the vocabulary and a block table long enough and inside the pool,
// learned positions are not exceeded, and a retention is a valid one on a rotary model. INVALID_ARGUMENT naming what is wrong.
absl::Status ValidateBatch(const ModelSpec& spec, const kvstore::KvLayout& model_layout,
                           const kvstore::KvLayout& kv_layout, int32_t num_blocks,
                           std::span<const SequenceInput> batch);

// The paged view of layer `layer`'s K and V in a pool of blocks laid out as `layout`
// starting at `pool` (host or device memory).
kernels::PagedKvView LayerKvView(const kvstore::KvLayout& layout, std::byte* pool, int layer);

class Model {
 public:
  // Loads DIR/config.json and DIR's safetensors onto the options' device
  // (FAILED_PRECONDITION when there is no such CUDA device).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& model_dir,
                                                     const ModelOptions& options = {});
  // Builds a model from tensors already in memory (benchmarks, tests).
  static absl::StatusOr<std::unique_ptr<Model>> Create(const ModelSpec& spec, const TensorSource& source,
                                                       const ModelOptions& options = {});

  ~Model();

  const ModelSpec& spec() const { return spec_; }
  const ShardLayout& shard() const { return shard_; }
  // What the load did with the packed-weight cache.
  const WeightCacheUse& weight_cache() const { return weight_cache_; }
  size_t weight_bytes() const { return weights_.bytes(); }  // on the device
  // Bytes of weights this rank reads to compute one token of a batch-1 decode step
  // (its dense layers and LM head, not the embedding table; for MoE layers the
  // expected share, top-k / experts, of the experts it holds).
  size_t decode_bytes_per_token() const;
  int num_threads() const { return num_threads_; }  // CPU kernel threads

  // The KV block layout this model needs at a given block size and cache dtype.
  kvstore::KvLayout KvLayoutFor(int block_size, KvDtype dtype) const;

  // Runs one step. Writes the new tokens' K/V into `kv` (a pool on the model's device),
  // and logits into `logits` on the host: rows in sequence order, each sequence
  // without pooling contributing all its new tokens or only the last (per all_logits),
  // [rows, vocab] float32. Sequences with pooling put one row each into `pooled` on
  // the host instead, in sequence order, [rows, hidden] float32 (Pooling says which);
  // `pooled` may be null when no sequence pools.
  // Errors (INVALID_ARGUMENT): empty sequence, token id outside the vocabulary, block
  // table too short or naming a block outside the pool, KV layout of another model or
  // a pool on another device, learned-position model past its maximum length. Nothing
  // is written on error.
  absl::Status Forward(std::span<const SequenceInput> batch, kvstore::KvPool& kv, std::vector<float>* logits,
                       std::vector<float>* pooled = nullptr);
  // The same, leaving the logits on the model's device: [rows, vocab] float32, valid
  // until the next call (a GPU sampler reads them there); null when no row has logits.
  absl::StatusOr<float*> ForwardOnDevice(std::span<const SequenceInput> batch, kvstore::KvPool& kv,
                                         std::vector<float>* pooled = nullptr);

 private:
  // Create, through the weight cache when `cache` is given.
  static absl::StatusOr<std::unique_ptr<Model>> Build(const ModelSpec& spec, const TensorSource& source,
                                                      const ModelOptions& options, const WeightCacheRequest* cache);
  Model(ModelSpec spec, ShardLayout shard, std::unique_ptr<kernels::Backend> backend, ModelWeights weights,
        const ModelOptions& options, int num_threads);

  // Lays the step's rows out on the host and uploads what the embedding and the final
  // gather read; the backend takes the rest (rotary, KV slots, attention).
  absl::Status BeginStep(std::span<const SequenceInput> batch);
  absl::Status Attention(int layer, kvstore::KvPool& kv, int64_t rows);
  absl::Status DenseMlp(const LayerWeights& layer, int64_t rows);
  // A post-norm sub-layer: x = Norm(residual_scale * x + sublayer's f(h)), and h = x.
  absl::Status PostNorm(const Norm& norm, int64_t rows, const std::function<absl::Status()>& sublayer);
  // rows rows of hidden floats, between the device buffers.
  absl::Status CopyRows(float* dst, const float* src, int64_t rows);
  kernels::NormParams NormOf(const Norm& norm) const;
  // The pooled rows' normalised states (on the device) into one row per pooling
  // sequence of the step, on the host.
  absl::Status PoolStates(const float* states, std::vector<float>* pooled);

  ModelSpec spec_;
  ShardLayout shard_;
  std::unique_ptr<kernels::Backend> backend_;
  ModelWeights weights_;
  WeightCacheUse weight_cache_;
  RotaryEmbedding rotary_;
  int num_threads_;
  LayerContext ctx_;      // backend and communicators for the layers
  LayerScratch scratch_;  // the parallel layers' buffers

  // Device scratch, grown to the largest step seen and reused (no allocation per step).
  std::unique_ptr<kernels::Buffer> x_;         // [T, hidden] residual stream
  std::unique_ptr<kernels::Buffer> h_;         // [T, hidden] normalised input of a sub-layer
  std::unique_ptr<kernels::Buffer> qkv_;       // [T, q + 2 kv]
  std::unique_ptr<kernels::Buffer> attn_;      // [T, q]
  std::unique_ptr<kernels::Buffer> mlp_;       // [T, 2 * inner] gate|up (or fc) output
  std::unique_ptr<kernels::Buffer> act_;       // [T, inner]
  std::unique_ptr<kernels::Buffer> pos_;       // [T, hidden] learned position embeddings
  std::unique_ptr<kernels::Buffer> selected_;  // [rows with logits, then rows pooled; hidden]
  std::unique_ptr<kernels::Buffer> tokens_, positions_, keep_;  // the step's rows
  // The step's rows on the host.
  std::vector<kernels::AttentionSequence> sequences_;
  std::vector<int32_t> host_tokens_, host_positions_, host_keep_;  // keep: logits rows, then pooled rows
  int64_t logit_rows_ = 0;                 // of host_keep_
  std::vector<int64_t> pooled_rows_;       // per pooling sequence: its rows in host_keep_
  std::vector<float> inv_freq_, freq_scratch_;
  std::vector<float> pooled_states_;  // the pooled rows' states, on the host
};

}  // namespace tessera::models
