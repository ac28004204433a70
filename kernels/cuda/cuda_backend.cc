#include "kernels/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "common/status.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/device_memory.h"
#include "kernels/cuda/elementwise.cuh"
#include "kernels/cuda/gemm.h"
#include "kernels/cuda/moe.cuh"
#include "kernels/cuda/norms.cuh"

namespace tessera::kernels {
namespace {

using cuda::DeviceMemory;

class DeviceBuffer final : public Buffer {
 public:
  absl::Status Reserve(size_t bytes) override { return memory_.Reserve(std::max<size_t>(bytes, 1)); }
  void* data() const override { return memory_.as<void>(); }
  absl::Status Upload(const void* host, size_t bytes) override { return memory_.Upload(host, bytes); }

 private:
  DeviceMemory memory_;
};

// A weight row-major [rows, cols] on the device, bf16 or fp32.
class DeviceWeight final : public Weight {
 public:
  DeviceWeight(int64_t rows, int64_t cols, bool bf16, DeviceMemory memory)
      : Weight(rows, cols), bf16_(bf16), memory_(std::move(memory)) {}
  size_t bytes() const override { return rows() * cols() * (bf16_ ? sizeof(uint16_t) : sizeof(float)); }
  bool bf16() const { return bf16_; }
  const void* data() const { return memory_.as<void>(); }

 private:
  bool bf16_;
  DeviceMemory memory_;
};

// Whether the matrix's rows follow each other in memory (one upload, no staging).
bool Contiguous(const HostMatrix& m) {
  for (int64_t r = 1; r < m.rows(); ++r) {
    if (m.row(r) != m.row(r - 1) + m.row_bytes()) return false;
  }
  return true;
}

class CudaBackend final : public Backend {
 public:
  CudaBackend(int device, cuda::Gemm gemm) : device_(device), gemm_(std::move(gemm)) {}

  bool host_memory() const override { return false; }
  std::unique_ptr<Buffer> NewBuffer() override { return std::make_unique<DeviceBuffer>(); }

  // bf16 stays bf16 (except for exact use: the router, widened as on the CPU's exact
  // path); fp16 is widened to fp32, which cuBLAS runs exactly.
  absl::StatusOr<std::unique_ptr<Weight>> Pack(const HostMatrix& m, WeightUse use) override {
    RETURN_IF_CUDA(cudaSetDevice(device_));
    const bool bf16 = m.dtype() == DType::kBF16 && use != WeightUse::kLinearExact;
    DeviceMemory memory;
    const bool as_stored = bf16 || m.dtype() == DType::kF32;
    if (as_stored && Contiguous(m)) {  // straight from the loader's read buffer
      RETURN_IF_ERROR(memory.Upload(m.row(0), m.rows() * m.row_bytes()));
      return std::make_unique<DeviceWeight>(m.rows(), m.cols(), bf16, std::move(memory));
    }
    // One row-major staging copy: the checkpoint's bytes as they are, or widened to fp32.
    const size_t row_bytes = m.cols() * (as_stored ? DTypeSize(m.dtype()) : sizeof(float));
    std::vector<uint8_t> staging(static_cast<size_t>(m.rows()) * row_bytes);
    for (int64_t r = 0; r < m.rows(); ++r) {
      uint8_t* dst = staging.data() + r * row_bytes;
      if (as_stored) {
        std::memcpy(dst, m.row(r), row_bytes);
      } else {
        for (int64_t c = 0; c < m.cols(); ++c) reinterpret_cast<float*>(dst)[c] = m.At(r, c);
      }
    }
    RETURN_IF_ERROR(memory.Upload(staging.data(), staging.size()));
    return std::make_unique<DeviceWeight>(m.rows(), m.cols(), bf16, std::move(memory));
  }
  absl::Status ToHost(const void* src, void* host, size_t bytes) override {
    RETURN_IF_CUDA(cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost));
    return absl::OkStatus();
  }
  absl::Status FromHost(const void* host, void* dst, size_t bytes) override {
    RETURN_IF_CUDA(cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice));
    return absl::OkStatus();
  }
  absl::Status Copy2D(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width_bytes,
                      int64_t rows) override {
    RETURN_IF_CUDA(cudaMemcpy2D(dst, dst_pitch, src, src_pitch, width_bytes, rows, cudaMemcpyDeviceToDevice));
    return absl::OkStatus();
  }

  // The rows' metadata, uploaded once per step: positions, each row's block table,
  // the rotary frequencies and the attention plan.
  absl::Status BeginStep(const StepRows& step) override {
    RETURN_IF_CUDA(cudaSetDevice(device_));
    std::vector<int32_t> table_offsets, tables;
    std::vector<int64_t> new_tokens;
    max_keys_ = 0;
    for (const AttentionSequence& s : step.sequences) {
      if (s.window > 0 || s.sink_tokens > 0) {
        return absl::UnimplementedError("per-sequence KV policies (window, sink-window) run on CPU workers only");
      }
      new_tokens.push_back(s.num_new);
      table_offsets.insert(table_offsets.end(), s.num_new, static_cast<int32_t>(tables.size()));
      tables.insert(tables.end(), s.block_table, s.block_table + s.table_len);
      max_keys_ = std::max(max_keys_, s.context_len + s.num_new);
    }
    rows_ = static_cast<int64_t>(step.positions.size());
    RETURN_IF_ERROR(positions_.Upload(step.positions.data(), step.positions.size_bytes()));
    RETURN_IF_ERROR(table_offsets_.Upload(table_offsets));
    RETURN_IF_ERROR(tables_.Upload(tables));
    if (!step.inv_freq.empty()) RETURN_IF_ERROR(freqs_.Upload(step.inv_freq.data(), step.inv_freq.size_bytes()));
    inv_freq_stride_ = step.inv_freq_stride;
    rotary_scale_ = step.rotary_scale;
    xpos_ = !step.xpos_zeta.empty();
    if (xpos_) RETURN_IF_ERROR(xpos_zeta_.Upload(step.xpos_zeta.data(), step.xpos_zeta.size_bytes()));
    xpos_scale_base_ = step.xpos_scale_base;
    const cuda::AttentionPlan plan = cuda::PlanAttention(new_tokens.data(), static_cast<int64_t>(new_tokens.size()));
    RETURN_IF_ERROR(plan_tiles_.Upload(plan.tiles));
    RETURN_IF_ERROR(plan_single_.Upload(plan.single_rows));
    plan_ = {plan_tiles_.as<int32_t>(), plan.num_tiles(), plan_single_.as<int32_t>(),
             static_cast<int64_t>(plan.single_rows.size())};
    return absl::OkStatus();
  }

  absl::Status Linear(LinearRef w, const float* x, int64_t rows, float* y, bool accumulate) override {
    RETURN_IF_ERROR(Matmul(static_cast<const DeviceWeight&>(*w.weight), x, rows, y, accumulate));
    if (w.bias != nullptr) RETURN_IF_CUDA(cuda::LaunchAddBias(y, w.bias, rows, w.weight->rows(), nullptr));
    return absl::OkStatus();
  }

  // One grouped cuBLAS call over the experts, or one GEMM per expert where cuBLAS has no
  // grouped GEMM for the types.
  absl::Status GroupedLinear(std::span<const LinearRef> experts, std::span<const int64_t> first, const float* x,
                             int64_t in_width, float* y) override {
    const DeviceWeight* any = nullptr;
    for (const LinearRef& e : experts) any = e.weight == nullptr ? any : static_cast<const DeviceWeight*>(e.weight);
    if (any == nullptr) return absl::OkStatus();
    const int64_t total = first.back(), out_width = any->rows();
    if (grouped_gemm_) {
      const void* base = x;
      if (any->bf16()) {
        RETURN_IF_ERROR(bf16_.Reserve(std::max<int64_t>(1, total * in_width) * sizeof(uint16_t)));
        RETURN_IF_CUDA(cuda::LaunchToBf16(x, total * in_width, bf16_.as<uint16_t>(), nullptr));
        base = bf16_.as<uint16_t>();
      }
      const size_t elem = any->bf16() ? sizeof(uint16_t) : sizeof(float);
      std::vector<cuda::Gemm::Problem> problems;
      for (size_t e = 0; e < experts.size(); ++e) {
        const int64_t n = first[e + 1] - first[e];
        if (n == 0) continue;
        problems.push_back({static_cast<const char*>(base) + first[e] * in_width * elem,
                            static_cast<const DeviceWeight*>(experts[e].weight)->data(), y + first[e] * out_width, n});
      }
      const absl::Status s = gemm_.RunGrouped(problems, in_width, out_width, any->bf16());
      if (s.ok()) return AddBiases(experts, first, y);
      if (s.code() != absl::StatusCode::kUnimplemented) return s;
      grouped_gemm_ = false;
    }
    for (size_t e = 0; e < experts.size(); ++e) {
      const int64_t n = first[e + 1] - first[e];
      if (n == 0) continue;
      RETURN_IF_ERROR(Matmul(static_cast<const DeviceWeight&>(*experts[e].weight), x + first[e] * in_width, n,
                             y + first[e] * out_width, false));
    }
    return AddBiases(experts, first, y);
  }

  absl::Status NormResidual(const NormParams& norm, float* residual, const float* delta, float* out, int64_t rows,
                            int64_t dim) override {
    if (norm.kind == NormKind::kRmsNorm) {
      RETURN_IF_CUDA(cuda::LaunchRmsNorm(residual, delta, norm.weight, out, rows, dim, norm.eps, nullptr));
    } else {
      RETURN_IF_CUDA(
          cuda::LaunchLayerNorm(residual, delta, norm.weight, norm.bias, out, rows, dim, norm.eps, nullptr));
    }
    return absl::OkStatus();
  }
  absl::Status Embedding(const Weight& table, int64_t id0, const int32_t* ids, int64_t rows, float* out) override {
    const auto& t = static_cast<const DeviceWeight&>(table);
    RETURN_IF_CUDA(cuda::LaunchEmbedding(t.data(), t.bf16(), id0, t.rows(), ids, rows, t.cols(), out, nullptr));
    return absl::OkStatus();
  }
  absl::Status Rotary(float* x, int64_t stride, int q_heads, int kv_heads, int head_dim) override {
    RETURN_IF_CUDA(cuda::LaunchRotary(x, rows_, stride, q_heads + kv_heads, head_dim, head_dim,
                                      positions_.as<int32_t>(), freqs_.as<float>(), inv_freq_stride_, rotary_scale_,
                                      xpos_ ? xpos_zeta_.as<float>() : nullptr, xpos_scale_base_, q_heads, nullptr));
    return absl::OkStatus();
  }
  absl::Status WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
                       int kv_heads) override {
    RETURN_IF_CUDA(cuda::LaunchWriteKv(k, v, stride, kv, kv_heads, DeviceRows(), nullptr));
    return absl::OkStatus();
  }
  absl::Status PagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                              float* out, int64_t out_stride) override {
    const int64_t floats = cuda::PagedAttentionWorkspace(plan_.num_single, shape, max_keys_);
    RETURN_IF_ERROR(workspace_.Reserve(std::max<int64_t>(1, floats) * sizeof(float)));
    RETURN_IF_CUDA(cuda::LaunchPagedAttention(q, q_stride, kv, shape, DeviceRows(), plan_, max_keys_,
                                              workspace_.as<float>(), out, out_stride, nullptr));
    return absl::OkStatus();
  }
  absl::Status GatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act,
                               float* out) override {
    RETURN_IF_CUDA(cuda::LaunchGatedActivation(gate_up, rows, inner, act, out, nullptr));
    return absl::OkStatus();
  }
  absl::Status ActivationInPlace(float* x, int64_t rows, int64_t dim, Activation act) override {
    RETURN_IF_CUDA(cuda::LaunchActivation(x, rows, dim, act, nullptr));
    return absl::OkStatus();
  }
  absl::Status GatherRows(const float* src, const int32_t* rows, int64_t count, int64_t dim, float* dst) override {
    RETURN_IF_CUDA(cuda::LaunchGatherRows(src, rows, count, dim, dst, nullptr));
    return absl::OkStatus();
  }
  absl::Status CombineRows(const float* src, const int32_t* slots, const float* weights, int64_t rows, int k,
                           int64_t dim, float* out) override {
    RETURN_IF_CUDA(cuda::LaunchCombineRows(src, slots, weights, rows, k, dim, out, nullptr));
    return absl::OkStatus();
  }
  absl::Status AddResidual(float* residual, const float* partial, const float* bias, int64_t rows,
                           int64_t dim) override {
    RETURN_IF_CUDA(cuda::LaunchAddResidual(residual, partial, bias, rows, dim, nullptr));
    return absl::OkStatus();
  }
  absl::Status Scale(float* x, int64_t n, float alpha) override {
    RETURN_IF_CUDA(cuda::LaunchScale(x, n, alpha, nullptr));
    return absl::OkStatus();
  }
  absl::Status RouteTopK(float* logits, int64_t rows, int experts, int k, int32_t* ids, float* weights,
                         bool renormalize) override {
    RETURN_IF_CUDA(cuda::LaunchRouteTopK(logits, rows, experts, k, ids, weights, renormalize, nullptr));
    return absl::OkStatus();
  }

 private:
  // y = x · Wᵀ (accumulate: y +=), no bias; bf16 weights take bf16 activations.
  absl::Status Matmul(const DeviceWeight& w, const float* x, int64_t rows, float* y, bool accumulate) {
    if (w.bf16()) {
      RETURN_IF_ERROR(bf16_.Reserve(std::max<int64_t>(1, rows * w.cols()) * sizeof(uint16_t)));
      RETURN_IF_CUDA(cuda::LaunchToBf16(x, rows * w.cols(), bf16_.as<uint16_t>(), nullptr));
      return gemm_.Run(bf16_.as<uint16_t>(), rows, w.cols(), static_cast<const uint16_t*>(w.data()), w.rows(), y,
                       accumulate);
    }
    return gemm_.Run(x, rows, w.cols(), static_cast<const float*>(w.data()), w.rows(), y, accumulate);
  }
  absl::Status AddBiases(std::span<const LinearRef> experts, std::span<const int64_t> first, float* y) {
    for (size_t e = 0; e < experts.size(); ++e) {
      const int64_t n = first[e + 1] - first[e];
      if (n == 0 || experts[e].bias == nullptr) continue;
      const int64_t width = experts[e].weight->rows();
      RETURN_IF_CUDA(cuda::LaunchAddBias(y + first[e] * width, experts[e].bias, n, width, nullptr));
    }
    return absl::OkStatus();
  }
  cuda::DeviceRows DeviceRows() const {
    return {positions_.as<int32_t>(), table_offsets_.as<int32_t>(), tables_.as<int32_t>(), rows_};
  }

  int device_;
  cuda::Gemm gemm_;
  bool grouped_gemm_ = true;  // until cuBLAS says it cannot for these types
  // The step's rows (BeginStep).
  int64_t rows_ = 0, max_keys_ = 0, inv_freq_stride_ = 0;
  float rotary_scale_ = 1.0f;
  bool xpos_ = false;
  float xpos_scale_base_ = 512.0f;
  DeviceMemory positions_, table_offsets_, tables_, freqs_, plan_tiles_, plan_single_, xpos_zeta_;
  cuda::DevicePlan plan_;
  DeviceMemory bf16_, workspace_;  // scratch
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int device) {
  const int devices = cuda::DeviceCount();
  if (device < 0 || device >= devices) {
    return absl::FailedPreconditionError(absl::StrCat("no CUDA device ", device, " (this machine has ", devices, ")"));
  }
  RETURN_IF_CUDA(cudaSetDevice(device));
  ASSIGN_OR_RETURN(cuda::Gemm gemm, cuda::Gemm::Create(nullptr));
  return std::unique_ptr<Backend>(new CudaBackend(device, std::move(gemm)));
}

}  // namespace tessera::kernels
