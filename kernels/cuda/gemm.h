// Matmuls on the GPU through cuBLAS: bf16 inputs, fp32 accumulation and output, the
// same contract as the CPU kernels (kernels/matmul.h): out[m, n] = x[m, k] · W[n, k]ᵀ
// (+ bias), W stored row-major as HF checkpoints store nn.Linear weights.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::kernels::cuda {

class Gemm {
 public:
  // A cuBLAS handle on `stream` (a cudaStream_t; nullptr: the default stream).
  static absl::StatusOr<Gemm> Create(void* stream);
  Gemm(Gemm&& other) noexcept;
  Gemm& operator=(Gemm&&) = delete;
  ~Gemm();

  // out = x · Wᵀ. x: [m, k] bf16 (uint16_t bit patterns, row-major), w: [n, k] bf16,
  // out: [m, n] fp32; `accumulate` adds to out instead of overwriting it.
  absl::Status Run(const uint16_t* x, int64_t m, int64_t k, const uint16_t* w, int64_t n, float* out,
                   bool accumulate = false);
  // The same in fp32 throughout (float32 checkpoints; exact against the CPU oracle).
  absl::Status Run(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* out,
                   bool accumulate = false);

  // One product of a grouped GEMM: out[m, n] = x[m, k] · w[n, k]ᵀ.
  struct Problem {
    const void* x;
    const void* w;
    float* out;
    int64_t m;
  };
  // Every problem (same k, n and input dtype: bf16, else fp32) in one cuBLAS call
  // (cublasGemmGroupedBatchedEx): the experts of an MoE layer, each over the rows
  // routed to it, without a launch per expert. UNIMPLEMENTED when this cuBLAS does
  // not support the types; the caller then runs the problems one by one.
  absl::Status RunGrouped(std::span<const Problem> problems, int64_t k, int64_t n, bool bf16);

 private:
  explicit Gemm(void* handle, void* stream) : handle_(handle), stream_(stream) {}
  void* handle_;  // cublasHandle_t
  void* stream_;  // cudaStream_t
  void** pointers_ = nullptr;  // device array of the grouped call's x, w, out pointers
  size_t pointer_capacity_ = 0;
};

}  // namespace tessera::kernels::cuda
