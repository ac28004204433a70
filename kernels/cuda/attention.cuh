// CUDA paged attention over the TP-independent KV block layout (kernels/attention.h
// describes the layout, kernels/attention_types.h the shapes; the CPU PagedAttention is the oracle). One kernel
// serves decode and prefill: every query row attends to the keys its position may see
// (causal, optionally a sliding window), GQA-aware, reading K and V block by block
// through the block table. Long contexts are split over several thread blocks
// (flash-decoding); a second kernel merges the splits' online-softmax states.
// Conventions as in norms.cuh.
#pragma once

#include <cstdint>

#include "kernels/attention_types.h"

namespace tessera::kernels::cuda {

// Rows of a flattened batch, on the device: row r is the query token at absolute
// position positions[r] of a sequence whose block table starts at
// block_tables[table_offsets[r]].
struct DeviceRows {
  const int32_t* positions = nullptr;
  const int32_t* table_offsets = nullptr;
  const int32_t* block_tables = nullptr;
  int64_t count = 0;
};

// Copies the rows' new K and V ([rows, num_kv_heads * head_dim], row stride in
// elements) into their cache slots.
int LaunchWriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv, int num_kv_heads,
                  const DeviceRows& rows, void* stream);

// Floats of device workspace LaunchPagedAttention needs for `rows` rows whose longest
// visible key range is `max_keys`.
int64_t PagedAttentionWorkspace(int64_t rows, const AttentionShape& shape, int64_t max_keys);

// out[row, h, :] = softmax(q·Kᵀ · scale) V over the row's visible keys.
int LaunchPagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                         const DeviceRows& rows, int64_t max_keys, float* workspace, float* out, int64_t out_stride,
                         void* stream);

}  // namespace tessera::kernels::cuda
