// Causal attention over a paged KV cache, for a flattened batch of sequences.
//
// The cache holds fixed-size blocks; a sequence's block table lists its blocks in
// token order. Within one layer, the K (and V) of kv-head h, token t of block b is
// slot t % block_size of the head record at
//   base + b * block_stride + h * head_stride        (bytes)
// (kvstore/kv_layout.h's [layer][K|V][kv_head][head record] layout, with the layer and
// K/V folded into the base pointers; common/kv_dtype.h gives a record's bytes).
#pragma once

#include <cstdint>
#include <span>

#include "common/thread_pool.h"
#include "kernels/attention_types.h"

namespace tessera::kernels {

// One sequence of the flattened batch.
struct AttentionSequence {
  int64_t first_row = 0;      // row of its first new token in q / out
  int64_t num_new = 0;        // new tokens this step
  int64_t context_len = 0;    // tokens cached before this step (the new ones follow)
  const int32_t* block_table = nullptr;  // enough blocks for context_len + num_new
  int64_t table_len = 0;                 // entries in block_table
  // What the sequence keeps (models/kv_retention.h): the last `window` keys (0: as the
  // layer's shape says; else the narrower of the two) and, before them, its first
  // `sink_tokens` keys, the attention sinks of StreamingLLM (Xiao et al. 2023). A
  // query sees the sinks from the position it has in that cache (sinks, then window):
  // moved back by the keys between them, with the sequence's rotary inverse
  // frequencies ([head_dim / 2]) and XPos decay bases (null: none) below. Entries of
  // the block table between the sink blocks and the window are never read.
  int window = 0;
  int sink_tokens = 0;
  const float* inv_freq = nullptr;
  const float* xpos_zeta = nullptr;
  float xpos_scale_base = 0.0f;
};

// Stores the new tokens' K and V ([rows, num_kv_heads * head_dim], row stride in
// elements) into their cache slots, in the cache's dtype.
void WriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv,
             int num_kv_heads, std::span<const AttentionSequence> seqs);

// out[row, h, :] = softmax(q·Kᵀ · scale) V over the keys each new token may see
// (its own and earlier positions, within the window, and the sequence's sinks), with an online softmax that
// walks the block table and reads the cache in its dtype. q: [rows, num_heads *
// head_dim]; out likewise.
void PagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv,
                    const AttentionShape& shape, std::span<const AttentionSequence> seqs,
                    float* out, int64_t out_stride, ThreadPool* pool);

}  // namespace tessera::kernels
