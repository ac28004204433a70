// The bytes of a KV block pool on the CPU device: num_blocks blocks of KvLayout, one
// 64-byte-aligned allocation made (and touched) once at start.
#pragma once

#include "common/aligned_buffer.h"
#include "kvstore/kv_layout.h"
#include "kvstore/kv_pool.h"

namespace tessera::kvstore {

class CpuKvStorage final : public KvPool {
 public:
  CpuKvStorage(const KvLayout& layout, int32_t num_blocks)
      : layout_(layout), num_blocks_(num_blocks), data_(static_cast<size_t>(layout.block_bytes()) * num_blocks) {}

  const KvLayout& layout() const override { return layout_; }
  int32_t num_blocks() const override { return num_blocks_; }
  std::byte* data() override { return data_.as<std::byte>(); }
  bool host_memory() const override { return true; }

 private:
  KvLayout layout_;
  int32_t num_blocks_;
  AlignedBuffer data_;  // [num_blocks][block_bytes]
};

}  // namespace tessera::kvstore
