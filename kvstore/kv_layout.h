// Byte layout of one KV cache block, independent of tensor parallelism.
//
// A block holds `block_size` consecutive tokens of one sequence for every layer:
//   [layer][K|V][kv_head][token][head_dim]   (float32 on the CPU device)
// A tensor-parallel rank would hold a kv-head slice of the same layout.
#pragma once

#include <cstdint>

namespace tessera::kvstore {

// The defaults every server and command starts from (one place for each).
inline constexpr int kDefaultBlockSize = 16;                   // tokens per block
inline constexpr int64_t kDefaultKvMemoryBytes = 256ll << 20;  // KV cache per worker

struct KvLayout {
  int num_layers = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int block_size = kDefaultBlockSize;  // tokens per block

  bool operator==(const KvLayout&) const = default;

  int64_t head_elems() const { return static_cast<int64_t>(block_size) * head_dim; }
  int64_t kv_elems() const { return head_elems() * num_kv_heads; }        // K or V, one layer
  int64_t layer_elems() const { return 2 * kv_elems(); }
  int64_t block_elems() const { return layer_elems() * num_layers; }

  // Element offsets within a block of one layer's K and V.
  int64_t k_offset(int layer) const { return layer * layer_elems(); }
  int64_t v_offset(int layer) const { return layer * layer_elems() + kv_elems(); }
};

}  // namespace tessera::kvstore
