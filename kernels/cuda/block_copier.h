// KV block moves between a GPU worker's device pool and its host tier: the host tier
// is pinned memory (cudaHostAlloc), and copies run with cudaMemcpyAsync on a copy
// stream of their own, so they overlap the compute stream's kernels. Ordering is by
// events, never by blocking the host: copies out wait for the compute that wrote the
// blocks (AfterCompute), and compute that reads blocks copied in waits for the copies
// (BeforeCompute).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <utility>

#include "absl/status/statusor.h"

namespace tessera::kernels::cuda {

class BlockCopier {
 public:
  // A pinned host pool of `host_blocks` blocks of `block_bytes` on device `device`.
  static absl::StatusOr<std::unique_ptr<BlockCopier>> Create(int64_t block_bytes, int32_t host_blocks, int device);
  ~BlockCopier();

  void* host_block(int32_t b) const { return static_cast<char*>(host_) + b * block_bytes_; }
  int32_t host_blocks() const { return host_blocks_; }

  // The copy stream waits for the work enqueued so far on `compute_stream`.
  absl::Status AfterCompute(void* compute_stream);
  // Device block -> host block, each pair (device block address, host block index).
  absl::Status CopyOut(std::span<const std::pair<const void*, int32_t>> copies);
  // Host block -> device block, each pair (device block address, host block index).
  absl::Status CopyIn(std::span<const std::pair<void*, int32_t>> copies);
  // `compute_stream` waits for the copies enqueued so far.
  absl::Status BeforeCompute(void* compute_stream);
  // Blocks the host until every copy is done (tests, shutdown).
  absl::Status Synchronize();

 private:
  BlockCopier(void* host, int64_t block_bytes, int32_t host_blocks, void* stream, void* event)
      : host_(host), block_bytes_(block_bytes), host_blocks_(host_blocks), stream_(stream), event_(event) {}

  void* host_;
  int64_t block_bytes_;
  int32_t host_blocks_;
  void* stream_;  // cudaStream_t
  void* event_;   // cudaEvent_t, reused for each ordering point
};

}  // namespace tessera::kernels::cuda
