#include "kvstore/cuda_kv_pool.h"

#include <cuda_runtime.h>

#include "kernels/cuda/device_memory.h"

namespace tessera::kvstore {

absl::StatusOr<std::unique_ptr<CudaKvPool>> CudaKvPool::Create(const KvLayout& layout, int32_t num_blocks) {
  std::byte* data = nullptr;
  const size_t bytes = static_cast<size_t>(layout.block_bytes()) * num_blocks;
  RETURN_IF_CUDA(cudaMalloc(&data, bytes));
  if (const cudaError_t e = cudaMemset(data, 0, bytes); e != cudaSuccess) {
    cudaFree(data);
    return kernels::cuda::CudaStatus(e, "cudaMemset");
  }
  return std::unique_ptr<CudaKvPool>(new CudaKvPool(layout, num_blocks, data));
}

CudaKvPool::~CudaKvPool() { cudaFree(data_); }

}  // namespace tessera::kvstore
