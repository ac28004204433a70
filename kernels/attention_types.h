// The paged KV cache view and attention shape, shared by the CPU and CUDA attention
// kernels (kernels/attention.h describes the layout).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/kv_dtype.h"

namespace tessera::kernels {

struct PagedKvView {
  std::byte* k_base = nullptr;  // K of this layer in block 0
  std::byte* v_base = nullptr;  // V of this layer in block 0
  int64_t block_stride = 0;     // bytes between consecutive blocks
  int64_t head_stride = 0;      // bytes between kv-heads within a block: one head record
  int block_size = 16;          // tokens per block
  int head_dim = 0;
  KvDtype dtype = KvDtype::kF32;  // of the values; common/kv_dtype.h gives the record
  // Bytes from a record's start to its scales (int8, fp8): KvValuesBytes, computed by
  // whoever makes the view, as the per-ISA kernels call no shared inline function.
  int64_t scales_offset = 0;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;  // query head h reads kv head h / (num_heads / num_kv_heads)
  int head_dim = 0;
  int window = 0;        // sliding window in keys (itself included); 0 = full causal
  float scale = 1.0f;    // usually 1/sqrt(head_dim)
};

}  // namespace tessera::kernels
