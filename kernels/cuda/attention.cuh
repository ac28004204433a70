// CUDA paged attention over the TP-independent KV block layout (kernels/attention.h
// describes the layout, kernels/attention_types.h the shapes; the CPU PagedAttention is
// the oracle). Every query row attends to the keys its position may see (causal,
// optionally a sliding window), GQA-aware, reading K and V block by block through the
// block table. Two kernels, chosen per sequence by PlanAttention:
// - prefill (FlashAttention-style): a tile of up to kPrefillTile consecutive query rows
//   of one sequence walks the keys in tiles staged in shared memory, each K/V tile read
//   from the cache once for the whole query tile, with an online softmax per row;
// - decode: one row at a time, long contexts split over several thread blocks
//   (flash-decoding) and the splits' online-softmax states merged by a second kernel.
// Conventions as in norms.cuh.
#pragma once

#include <cstdint>
#include <vector>

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

// Query rows per prefill tile, and the fewest new tokens a sequence needs to be
// attended in tiles (fewer: the decode kernel, which splits long contexts instead).
constexpr int kPrefillTile = 32;
constexpr int kMinTiledRows = 8;

// Which kernel attends which rows, on the host: `tiles` holds (first row, row count)
// pairs, `single_rows` the rows for the decode kernel. `new_tokens[s]` is sequence s's
// number of rows; its rows follow the previous sequence's (the flattened batch order).
struct AttentionPlan {
  std::vector<int32_t> tiles;
  std::vector<int32_t> single_rows;
  int64_t num_tiles() const { return static_cast<int64_t>(tiles.size() / 2); }
};
AttentionPlan PlanAttention(const int64_t* new_tokens, int64_t sequences);

// The plan's arrays on the device.
struct DevicePlan {
  const int32_t* tiles = nullptr;
  int64_t num_tiles = 0;
  const int32_t* single_rows = nullptr;
  int64_t num_single = 0;
};

// Floats of device workspace LaunchPagedAttention needs for `single_rows` decode rows
// whose longest visible key range is `max_keys`.
int64_t PagedAttentionWorkspace(int64_t single_rows, const AttentionShape& shape, int64_t max_keys);

// out[row, h, :] = softmax(q·Kᵀ · scale) V over the row's visible keys, for every row
// of the plan.
int LaunchPagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                         const DeviceRows& rows, const DevicePlan& plan, int64_t max_keys, float* workspace,
                         float* out, int64_t out_stride, void* stream);

}  // namespace tessera::kernels::cuda
