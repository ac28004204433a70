// The KV block pool in a GPU's memory (kvstore/kv_pool.h), on the current CUDA device.
// Built only where the CUDA kernels are.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kvstore/kv_pool.h"

namespace tessera::kvstore {

class CudaKvPool final : public KvPool {
 public:
  // num_blocks blocks of `layout`, zeroed.
  static absl::StatusOr<std::unique_ptr<CudaKvPool>> Create(const KvLayout& layout, int32_t num_blocks);
  ~CudaKvPool() override;
  CudaKvPool(const CudaKvPool&) = delete;
  CudaKvPool& operator=(const CudaKvPool&) = delete;

  const KvLayout& layout() const override { return layout_; }
  int32_t num_blocks() const override { return num_blocks_; }
  std::byte* data() override { return data_; }  // device memory
  bool host_memory() const override { return false; }

 private:
  CudaKvPool(const KvLayout& layout, int32_t num_blocks, std::byte* data)
      : layout_(layout), num_blocks_(num_blocks), data_(data) {}
  KvLayout layout_;
  int32_t num_blocks_;
  std::byte* data_;
};

}  // namespace tessera::kvstore
