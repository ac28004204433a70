#include "kernels/cuda/device_memory.h"

#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace tessera::kernels::cuda {

absl::Status CudaStatus(int error, const char* what) {
  if (error == 0) return absl::OkStatus();
  const auto e = static_cast<cudaError_t>(error);
  const std::string message = absl::StrCat(what, ": ", cudaGetErrorString(e));
  return e == cudaErrorMemoryAllocation ? absl::ResourceExhaustedError(message) : absl::InternalError(message);
}

DeviceMemory::~DeviceMemory() { cudaFree(ptr_); }

absl::Status DeviceMemory::Reserve(size_t bytes) {
  if (bytes <= size_) return absl::OkStatus();
  cudaFree(ptr_);
  ptr_ = nullptr;
  size_ = 0;
  RETURN_IF_CUDA(cudaMalloc(&ptr_, bytes));
  size_ = bytes;
  return absl::OkStatus();
}

absl::Status DeviceMemory::Upload(const void* host, size_t bytes) {
  if (absl::Status s = Reserve(std::max<size_t>(bytes, 1)); !s.ok()) return s;
  RETURN_IF_CUDA(cudaMemcpy(ptr_, host, bytes, cudaMemcpyHostToDevice));
  return absl::OkStatus();
}

}  // namespace tessera::kernels::cuda
