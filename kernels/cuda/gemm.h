// Matmuls on the GPU through cuBLAS: bf16 inputs, fp32 accumulation and output, the
// same contract as the CPU kernels (kernels/matmul.h): out[m, n] = x[m, k] · W[n, k]ᵀ
// (+ bias), W stored row-major as HF checkpoints store nn.Linear weights.
#pragma once

#include <cstdint>

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

 private:
  explicit Gemm(void* handle) : handle_(handle) {}
  void* handle_;  // cublasHandle_t
};

}  // namespace tessera::kernels::cuda
