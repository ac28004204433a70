// One MoE layer's routing grouped by expert, shared by the CPU and GPU MoE layers so
// that both run each expert over a contiguous block of its rows and sum each row's
// expert outputs in the same (expert) order.
#pragma once

#include <cstdint>
#include <vector>

namespace tessera::models {

struct MoeRouting {
  // The rows this rank runs through each expert it holds: expert by expert, rows in
  // order; expert e's are grouped_rows[first[e], first[e + 1]).
  std::vector<int32_t> grouped_rows;
  std::vector<int64_t> first;  // [experts + 1]
  // For every row, its k expert outputs in expert order: where each is in the grouped
  // order (-1: an expert another rank holds) and its routing weight. [rows, k]
  std::vector<int32_t> slots;
  std::vector<float> weights;
};

// `ids` / `weights`: [rows, k] from kernels::RouteTopK (distinct experts per row);
// `held[e]`: whether this rank runs expert e.
MoeRouting GroupByExpert(const std::vector<int32_t>& ids, const std::vector<float>& weights, int64_t rows, int k,
                         const std::vector<bool>& held);

}  // namespace tessera::models
