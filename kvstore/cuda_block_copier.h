// KV block moves between a GPU worker's device pool and host memory (its host tier, a
// fetch's staging): cudaMemcpyAsync on a copy stream of its own, a whole step's
// blocks queued at once and waited for once, instead of a synchronous copy per block.
// Host memory should be pinned (PinnedRegion): pageable memory makes the driver stage
// every copy through a bounce buffer at a fraction of the bandwidth.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"

namespace tessera::kvstore {

// Pins existing host memory (cudaHostRegister) while the object lives.
class PinnedRegion {
 public:
  static absl::StatusOr<std::unique_ptr<PinnedRegion>> Create(void* data, size_t bytes);
  ~PinnedRegion();

 private:
  explicit PinnedRegion(void* data) : data_(data) {}
  void* data_;
};

class BlockCopier {
 public:
  // Copies of `block_bytes` on device `device`.
  static absl::StatusOr<std::unique_ptr<BlockCopier>> Create(int64_t block_bytes, int device);
  ~BlockCopier();

  // A block of the device pool and block_bytes of host memory, source first.
  struct Out {
    const void* device;
    void* host;
  };
  struct In {
    const void* host;
    void* device;
  };
  // The copy stream waits for the work queued so far on `compute_stream` (a
  // cudaStream_t; nullptr: the default stream), e.g. the step that wrote the blocks.
  absl::Status AfterCompute(void* compute_stream);
  // Queues device -> host (CopyOut) or host -> device (CopyIn) copies.
  absl::Status CopyOut(std::span<const Out> copies);
  absl::Status CopyIn(std::span<const In> copies);
  // Blocks the host until every queued copy is done.
  absl::Status Synchronize();

 private:
  BlockCopier(int64_t block_bytes, void* stream, void* event)
      : block_bytes_(block_bytes), stream_(stream), event_(event) {}

  int64_t block_bytes_;
  void* stream_;  // cudaStream_t
  void* event_;   // cudaEvent_t, reused for each ordering point
};

}  // namespace tessera::kvstore
