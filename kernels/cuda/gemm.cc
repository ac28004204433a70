#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

namespace tessera::kernels::cuda {
namespace {

absl::Status Check(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cublasGetStatusString(s)));
}

}  // namespace

absl::StatusOr<Gemm> Gemm::Create(void* stream) {
  cublasHandle_t handle = nullptr;
  if (absl::Status s = Check(cublasCreate(&handle), "cublasCreate"); !s.ok()) return s;
  if (absl::Status s = Check(cublasSetStream(handle, static_cast<cudaStream_t>(stream)), "cublasSetStream"); !s.ok()) {
    cublasDestroy(handle);
    return s;
  }
  return Gemm(handle);
}

Gemm::Gemm(Gemm&& other) noexcept : handle_(other.handle_) { other.handle_ = nullptr; }

Gemm::~Gemm() {
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

namespace {

// Row-major out[m, n] = x[m, k] · w[n, k]ᵀ is column-major outᵀ[n, m] = w · xᵀ:
// A = w (column-major [k, n], transposed), B = x (column-major [k, m]).
absl::Status GemmEx(void* handle, const void* x, const void* w, cudaDataType_t type, int64_t m, int64_t k, int64_t n,
                    float* out, bool accumulate) {
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  return Check(cublasGemmEx(static_cast<cublasHandle_t>(handle), CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n),
                            static_cast<int>(m), static_cast<int>(k), &alpha, w, type, static_cast<int>(k), x, type,
                            static_cast<int>(k), &beta, out, CUDA_R_32F, static_cast<int>(n),
                            type == CUDA_R_32F ? CUBLAS_COMPUTE_32F_PEDANTIC : CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

}  // namespace

absl::Status Gemm::Run(const uint16_t* x, int64_t m, int64_t k, const uint16_t* w, int64_t n, float* out,
                       bool accumulate) {
  return GemmEx(handle_, x, w, CUDA_R_16BF, m, k, n, out, accumulate);
}

absl::Status Gemm::Run(const float* x, int64_t m, int64_t k, const float* w, int64_t n, float* out, bool accumulate) {
  return GemmEx(handle_, x, w, CUDA_R_32F, m, k, n, out, accumulate);
}

}  // namespace tessera::kernels::cuda
