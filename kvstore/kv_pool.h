// A pool of KV blocks in one device's memory, as the forward pass writes and reads it:
// num_blocks blocks of KvLayout (block_bytes() each). CpuKvStorage holds one in host
// memory, CudaKvPool (kvstore/cuda_kv_pool.h) in a GPU's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstore/kv_layout.h"

namespace tessera::kvstore {

class KvPool {
 public:
  virtual ~KvPool() = default;
  virtual const KvLayout& layout() const = 0;
  virtual int32_t num_blocks() const = 0;
  virtual std::byte* data() = 0;
  std::byte* block(int32_t b) { return data() + b * layout().block_bytes(); }
  // True when the blocks are in host memory.
  virtual bool host_memory() const = 0;
};

}  // namespace tessera::kvstore
