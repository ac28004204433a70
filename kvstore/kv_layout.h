// Byte layout of one KV cache block, independent of tensor parallelism.
//
// A block holds `block_size` consecutive tokens of one sequence for every layer:
//   [layer][K|V][kv_head][head record]
// where a head record is the block's tokens of one kv head in the cache's dtype with
// their scales (common/kv_dtype.h). A tensor-parallel rank holds a kv-head slice of the
// same layout.
#pragma once

#include <cstdint>

#include "common/kv_dtype.h"

namespace tessera::kvstore {

// The defaults every server and command starts from (one place for each).
inline constexpr int kDefaultBlockSize = 16;                   // tokens per block
inline constexpr int64_t kDefaultKvMemoryBytes = 256ll << 20;  // KV cache per worker

struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = kDefaultBlockSize;  // tokens per block
  KvDtype dtype = KvDtype::kF32;

  bool operator==(const KvLayout&) const = default;

  int64_t head_bytes() const { return KvRecordBytes(dtype, block_size, head_dim); }
  int64_t kv_bytes() const { return head_bytes() * num_kv_heads; }  // K or V, one layer
  int64_t layer_bytes() const { return 2 * kv_bytes(); }
  int64_t block_bytes() const { return layer_bytes() * num_layers; }

  // Byte offsets within a block of one layer's K and V.
  int64_t k_offset(int layer) const { return layer * layer_bytes(); }
  int64_t v_offset(int layer) const { return layer * layer_bytes() + kv_bytes(); }
};

}  // namespace tessera::kvstore
