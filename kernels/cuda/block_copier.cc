#include "kernels/cuda/block_copier.h"

#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace tessera::kernels::cuda {
namespace {

absl::Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlockCopier>> BlockCopier::Create(int64_t block_bytes, int32_t host_blocks,
                                                                 int device) {
  if (absl::Status s = Check(cudaSetDevice(device), "cudaSetDevice"); !s.ok()) return s;
  void* host = nullptr;
  cudaStream_t stream = nullptr;
  cudaEvent_t event = nullptr;
  absl::Status s = Check(cudaHostAlloc(&host, static_cast<size_t>(block_bytes) * host_blocks, cudaHostAllocDefault),
                         "cudaHostAlloc (the pinned host tier)");
  if (s.ok()) s = Check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
  if (s.ok()) s = Check(cudaEventCreateWithFlags(&event, cudaEventDisableTiming), "cudaEventCreate");
  if (!s.ok()) {
    if (event != nullptr) cudaEventDestroy(event);
    if (stream != nullptr) cudaStreamDestroy(stream);
    if (host != nullptr) cudaFreeHost(host);
    return s;
  }
  return std::unique_ptr<BlockCopier>(new BlockCopier(host, block_bytes, host_blocks, stream, event));
}

BlockCopier::~BlockCopier() {
  cudaStreamSynchronize(static_cast<cudaStream_t>(stream_));
  cudaEventDestroy(static_cast<cudaEvent_t>(event_));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  cudaFreeHost(host_);
}

absl::Status BlockCopier::AfterCompute(void* compute_stream) {
  auto event = static_cast<cudaEvent_t>(event_);
  if (absl::Status s = Check(cudaEventRecord(event, static_cast<cudaStream_t>(compute_stream)), "cudaEventRecord");
      !s.ok()) {
    return s;
  }
  return Check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream_), event, 0), "cudaStreamWaitEvent");
}

absl::Status BlockCopier::CopyOut(std::span<const std::pair<const void*, int32_t>> copies) {
  for (const auto& [device, host] : copies) {
    if (host < 0 || host >= host_blocks_) return absl::InvalidArgumentError("host block out of range");
    if (absl::Status s = Check(cudaMemcpyAsync(host_block(host), device, block_bytes_, cudaMemcpyDeviceToHost,
                                               static_cast<cudaStream_t>(stream_)),
                               "cudaMemcpyAsync (device to host)");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status BlockCopier::CopyIn(std::span<const std::pair<void*, int32_t>> copies) {
  for (const auto& [device, host] : copies) {
    if (host < 0 || host >= host_blocks_) return absl::InvalidArgumentError("host block out of range");
    if (absl::Status s = Check(cudaMemcpyAsync(device, host_block(host), block_bytes_, cudaMemcpyHostToDevice,
                                               static_cast<cudaStream_t>(stream_)),
                               "cudaMemcpyAsync (host to device)");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status BlockCopier::BeforeCompute(void* compute_stream) {
  auto event = static_cast<cudaEvent_t>(event_);
  if (absl::Status s = Check(cudaEventRecord(event, static_cast<cudaStream_t>(stream_)), "cudaEventRecord"); !s.ok()) {
    return s;
  }
  return Check(cudaStreamWaitEvent(static_cast<cudaStream_t>(compute_stream), event, 0), "cudaStreamWaitEvent");
}

absl::Status BlockCopier::Synchronize() {
  return Check(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_)), "cudaStreamSynchronize");
}

}  // namespace tessera::kernels::cuda
