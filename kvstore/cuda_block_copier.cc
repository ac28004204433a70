#include "kvstore/cuda_block_copier.h"

#include <cuda_runtime.h>

#include "kernels/cuda/device_memory.h"


namespace tessera::kvstore {

absl::StatusOr<std::unique_ptr<PinnedRegion>> PinnedRegion::Create(void* data, size_t bytes) {
  RETURN_IF_CUDA(cudaHostRegister(data, bytes, cudaHostRegisterDefault));
  return std::unique_ptr<PinnedRegion>(new PinnedRegion(data));
}

PinnedRegion::~PinnedRegion() { cudaHostUnregister(data_); }

absl::StatusOr<std::unique_ptr<BlockCopier>> BlockCopier::Create(int64_t block_bytes, int device) {
  RETURN_IF_CUDA(cudaSetDevice(device));
  cudaStream_t stream = nullptr;
  cudaEvent_t event = nullptr;
  RETURN_IF_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  if (const cudaError_t e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming); e != cudaSuccess) {
    cudaStreamDestroy(stream);
    return kernels::cuda::CudaStatus(e, "cudaEventCreate");
  }
  return std::unique_ptr<BlockCopier>(new BlockCopier(block_bytes, stream, event));
}

BlockCopier::~BlockCopier() {
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

absl::Status BlockCopier::AfterCompute(void* compute_stream) {
  auto event = static_cast<cudaEvent_t>(event_);
  RETURN_IF_CUDA(cudaEventRecord(event, static_cast<cudaStream_t>(compute_stream)));
  RETURN_IF_CUDA(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream_), event, 0));
  return absl::OkStatus();
}

absl::Status BlockCopier::CopyOut(std::span<const Out> copies) {
  for (const Out& m : copies) {
    RETURN_IF_CUDA(cudaMemcpyAsync(m.host, m.device, block_bytes_, cudaMemcpyDeviceToHost,
                                   static_cast<cudaStream_t>(stream_)));
  }
  return absl::OkStatus();
}

absl::Status BlockCopier::CopyIn(std::span<const In> copies) {
  for (const In& m : copies) {
    RETURN_IF_CUDA(cudaMemcpyAsync(m.device, m.host, block_bytes_, cudaMemcpyHostToDevice,
                                   static_cast<cudaStream_t>(stream_)));
  }
  return absl::OkStatus();
}

absl::Status BlockCopier::Synchronize() {
  RETURN_IF_CUDA(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)));
  return absl::OkStatus();
}

}  // namespace tessera::kvstore
