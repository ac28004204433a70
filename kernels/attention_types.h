// The paged KV cache view and attention shape, shared by the CPU and CUDA attention
// kernels (kernels/attention.h describes the layout).
#pragma once

#include <cstdint>

namespace tessera::kernels {

struct PagedKvView {
  float* k_base = nullptr;     // K of this layer in block 0
  float* v_base = nullptr;     // V of this layer in block 0
  int64_t block_stride = 0;    // elements between consecutive blocks
  int64_t head_stride = 0;     // elements between kv-heads within a block
  int block_size = 16;         // tokens per block
  int head_dim = 0;
};

struct AttentionShape {
  int num_heads = 0;
  int num_kv_heads = 0;  // query head h reads kv head h / (num_heads / num_kv_heads)
  int head_dim = 0;
  int window = 0;        // sliding window in keys (itself included); 0 = full causal
  float scale = 1.0f;    // usually 1/sqrt(head_dim)
};

}  // namespace tessera::kernels
