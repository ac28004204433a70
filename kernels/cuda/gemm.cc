#include "kernels/cuda/gemm.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <utility>

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
  return Gemm(handle, stream);
}

Gemm::Gemm(Gemm&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)),
      stream_(other.stream_),
      pointers_(std::exchange(other.pointers_, nullptr)),
      pointer_capacity_(std::exchange(other.pointer_capacity_, 0)) {}

Gemm::~Gemm() {
  if (handle_ != nullptr) cublasDestroy(static_cast<cublasHandle_t>(handle_));
  cudaFree(pointers_);
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

absl::Status Gemm::RunGrouped(std::span<const Problem> problems, int64_t k, int64_t n, bool bf16) {
  const int count = static_cast<int>(problems.size());
  if (count == 0) return absl::OkStatus();
  // Device pointer arrays, as cuBLAS wants them: w (A), x (B), out (C), `count` each.
  if (pointer_capacity_ < 3 * problems.size()) {
    cudaFree(pointers_);
    pointers_ = nullptr;
    pointer_capacity_ = 0;
    if (cudaMalloc(&pointers_, 3 * problems.size() * sizeof(void*)) != cudaSuccess) {
      return absl::ResourceExhaustedError("cannot allocate the grouped GEMM's pointer arrays");
    }
    pointer_capacity_ = 3 * problems.size();
  }
  std::vector<const void*> host(3 * problems.size());
  // Each problem is its own group (group sizes 1): only m differs between them, and the
  // transposed, column-major view (see GemmEx) makes m cuBLAS's n.
  std::vector<cublasOperation_t> trans_a(count, CUBLAS_OP_T), trans_b(count, CUBLAS_OP_N);
  std::vector<int> rows(count), cols(count, static_cast<int>(n)), depth(count, static_cast<int>(k)),
      lda(count, static_cast<int>(k)), ldc(count, static_cast<int>(n)), group_size(count, 1);
  std::vector<float> alpha(count, 1.0f), beta(count, 0.0f);
  for (int i = 0; i < count; ++i) {
    host[i] = problems[i].w;
    host[count + i] = problems[i].x;
    host[2 * count + i] = problems[i].out;
    rows[i] = static_cast<int>(problems[i].m);
  }
  if (cudaMemcpyAsync(pointers_, host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice,
                      static_cast<cudaStream_t>(stream_)) != cudaSuccess) {
    return absl::InternalError("cannot upload the grouped GEMM's pointer arrays");
  }
  const cudaDataType_t type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasStatus_t s = cublasGemmGroupedBatchedEx(
      static_cast<cublasHandle_t>(handle_), trans_a.data(), trans_b.data(), cols.data(), rows.data(), depth.data(),
      alpha.data(), const_cast<const void* const*>(pointers_), type, lda.data(),
      const_cast<const void* const*>(pointers_ + count), type, lda.data(), beta.data(), pointers_ + 2 * count,
      CUDA_R_32F, ldc.data(), count, group_size.data(), bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_PEDANTIC);
  if (s == CUBLAS_STATUS_NOT_SUPPORTED) {
    return absl::UnimplementedError("this cuBLAS has no grouped GEMM for these types");
  }
  return Check(s, "cublasGemmGroupedBatchedEx");
}

}  // namespace tessera::kernels::cuda
