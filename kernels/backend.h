// The device a forward pass runs on: its memory and the primitives of a transformer
// step. models::Model is the only forward pass; it calls these, and each device
// implements them: kernels/cpu_backend.h (the CPU, with its thread pool) and
// kernels/cuda_backend.h (one CUDA GPU). Collectives are not here: the parallel layer
// types (models/parallel_layers.h) issue them, staging device memory through the host
// with ToHost/FromHost when a communicator takes host buffers.
//
// Pointers passed to the primitives are the backend's memory (a Buffer's data, or a
// KV pool on the same device) unless a parameter says "host". Activations are fp32,
// rows contiguous. Calls run in order on the calling thread's view of the device; a
// Download or ToHost sees every earlier call's result.
//
// Thread-safety: one step at a time per backend (the step state set by BeginStep is
// shared by the calls that follow it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/attention_types.h"
#include "kernels/host_matrix.h"
#include "kernels/norm_kind.h"

namespace tessera::kernels {

// How a weight is used, which decides the backend's layout for it.
enum class WeightUse {
  kLinear,       // y = x · Wᵀ, at the backend's matmul precision
  kLinearExact,  // the same with fp32 activations always (MoE routers: exact decisions)
  kTable,        // rows looked up by id (embeddings)
};

// A weight in the backend's own layout (packed panels on the CPU, a plain row-major
// device array on a GPU). Immutable once packed.
class Weight {
 public:
  virtual ~Weight() = default;
  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  virtual size_t bytes() const = 0;  // resident bytes on the device

 protected:
  Weight(int64_t rows, int64_t cols) : rows_(rows), cols_(cols) {}

 private:
  int64_t rows_, cols_;
};

// A linear layer's weight and optional bias ([weight->rows()] floats; null: none).
struct LinearRef {
  const Weight* weight = nullptr;
  const float* bias = nullptr;
};

// Device memory grown on demand; never shrinks, so per-step scratch settles at its peak.
class Buffer {
 public:
  virtual ~Buffer() = default;
  // Room for at least `bytes` (contents not kept when it grows).
  virtual absl::Status Reserve(size_t bytes) = 0;
  virtual void* data() const = 0;
  // Copies `bytes` from host memory, growing first.
  virtual absl::Status Upload(const void* host, size_t bytes) = 0;

  template <typename T>
  absl::StatusOr<T*> ReserveFor(size_t count) {
    if (absl::Status s = Reserve(count * sizeof(T)); !s.ok()) return s;
    return as<T>();
  }
  template <typename T>
  absl::Status Upload(std::span<const T> host) {
    return Upload(host.data(), host.size_bytes());
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(data());
  }
};

// A forward step's rows, on the host: what rotary embedding, KV writes and attention
// need. Valid until the next BeginStep.
struct StepRows {
  std::span<const AttentionSequence> sequences;  // in row order; block tables on the host
  std::span<const int32_t> positions;            // [rows] absolute positions
  // Rotary inverse frequencies: [rows][half] (stride half: dynamic NTK, per sequence)
  // or one set for every row (stride 0); empty when the model has no rotary embedding.
  std::span<const float> inv_freq;
  int64_t inv_freq_stride = 0;
  float rotary_scale = 1.0f;  // YaRN's attention factor; else 1
  // XPos (Sun et al. 2022): after the rotation, pair j of a query head is scaled by
  // xpos_zeta[j]^(pos / xpos_scale_base) and of a key head by its inverse. Empty: none.
  std::span<const float> xpos_zeta;
  float xpos_scale_base = 512.0f;
};

struct NormParams {
  NormKind kind = NormKind::kRmsNorm;
  const float* weight = nullptr;
  const float* bias = nullptr;  // LayerNorm only; may be null
  float eps = 1e-5f;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // True when the backend's memory is host memory (no staging needed).
  virtual bool host_memory() const = 0;

  // Memory.
  virtual std::unique_ptr<Buffer> NewBuffer() = 0;
  // Copies what it keeps: `matrix` may point into the loader's reused read buffer.
  virtual absl::StatusOr<std::unique_ptr<Weight>> Pack(const HostMatrix& matrix, WeightUse use) = 0;

  // Packed weights as bytes, for the packed-weight cache (models/weight_cache.h).
  // The name of the layout Pack makes: equal names mean equal bytes for the same
  // matrix and use. Empty: this backend's weights are not cached (the defaults).
  virtual std::string PackedLayout() const { return {}; }
  // A weight Pack made, as its bytes in memory (a backend with a PackedLayout).
  virtual std::span<const uint8_t> PackedBytes(const Weight&) const { return {}; }
  // The weight Pack makes for a [rows, cols] matrix of `dtype` and `use`, from its
  // bytes: `fill` writes them into the weight's memory (PackedBytes' size for that
  // shape). INVALID_ARGUMENT when `bytes` is not that size.
  virtual absl::StatusOr<std::unique_ptr<Weight>> RestorePacked(WeightUse /*use*/, int64_t /*rows*/,
                                                                int64_t /*cols*/, DType /*dtype*/, size_t /*bytes*/,
                                                                const std::function<absl::Status(void*)>& /*fill*/) {
    return absl::UnimplementedError("this backend's packed weights are not cached");
  }
  virtual absl::Status ToHost(const void* src, void* host, size_t bytes) = 0;
  virtual absl::Status FromHost(const void* host, void* dst, size_t bytes) = 0;
  // rows rows of `width_bytes`, between two buffers of this device with row pitches.
  virtual absl::Status Copy2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                              int64_t rows) = 0;

  // The step whose rows the calls below address (rotary, KV writes, attention).
  virtual absl::Status BeginStep(const StepRows& rows) = 0;

  // y = x · Wᵀ + b ([rows, w.cols] -> [rows, w.rows]); accumulate: y += x · Wᵀ + b.
  virtual absl::Status Linear(LinearRef w, const float* x, int64_t rows, float* y, bool accumulate) = 0;
  // Experts of an MoE layer: rows [first[e], first[e+1]) of x (in_width floats each) go
  // through experts[e] into the same rows of y. Experts with no rows may have no weight.
  virtual absl::Status GroupedLinear(std::span<const LinearRef> experts, std::span<const int64_t> first,
                                     const float* x, int64_t in_width, float* y) = 0;
  // With `delta`: residual += delta first. Then out = norm(residual), per row.
  virtual absl::Status NormResidual(const NormParams& norm, float* residual, const float* delta, float* out,
                                    int64_t rows, int64_t dim) = 0;
  // out[r] = table[ids[r] - id0] for ids inside the table's rows, zeros for the others.
  virtual absl::Status Embedding(const Weight& table, int64_t id0, const int32_t* ids, int64_t rows,
                                 float* out) = 0;
  // Rotates q_heads query heads then kv_heads key heads of head_dim at the start of
  // each of the step's rows (stride); with XPos, scales them (StepRows::xpos_zeta).
  virtual absl::Status Rotary(float* x, int64_t stride, int q_heads, int kv_heads, int head_dim) = 0;
  // The step's new K and V ([rows, kv_heads * head_dim], row stride) into their slots.
  virtual absl::Status WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
                               int kv_heads) = 0;
  // out = causal paged attention of the step's rows (kernels/attention.h).
  virtual absl::Status PagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv,
                                      const AttentionShape& shape, float* out, int64_t out_stride) = 0;
  // out = act(gate) ⊙ up for rows [gate(inner) | up(inner)].
  virtual absl::Status GatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act,
                                       float* out) = 0;
  virtual absl::Status ActivationInPlace(float* x, int64_t rows, int64_t dim, Activation act) = 0;
  // dst[i] = src[rows[i]], dim floats a row.
  virtual absl::Status GatherRows(const float* src, const int32_t* rows, int64_t count, int64_t dim,
                                  float* dst) = 0;
  // out[r] = Σ_j weights[r*k+j] · src[slots[r*k+j]] in j order, skipping slots < 0.
  virtual absl::Status CombineRows(const float* src, const int32_t* slots, const float* weights, int64_t rows, int k,
                                   int64_t dim, float* out) = 0;
  // residual += partial + bias (bias may be null).
  virtual absl::Status AddResidual(float* residual, const float* partial, const float* bias, int64_t rows,
                                   int64_t dim) = 0;
  // MoE routing as HF, per row of [rows, experts] logits (which may be overwritten):
  // softmax, the k best (ties: the lower expert), renormalised to sum to 1 when
  // `renormalize` (Mixtral; norm_topk_prob). ids, weights: [rows, k].
  virtual absl::Status RouteTopK(float* logits, int64_t rows, int experts, int k, int32_t* ids, float* weights,
                                 bool renormalize) = 0;
  // x[i] *= alpha for i < n (DeepNorm's residual scale).
  virtual absl::Status Scale(float* x, int64_t n, float alpha) = 0;
};

}  // namespace tessera::kernels
