#include "models/moe_routing.h"

#include <algorithm>
#include <numeric>

namespace tessera::models {

MoeRouting GroupByExpert(const std::vector<int32_t>& ids, const std::vector<float>& weights, int64_t rows, int k,
                         const std::vector<bool>& held) {
  MoeRouting g;
  const int experts = static_cast<int>(held.size());
  g.first.assign(experts + 1, 0);
  std::vector<int32_t> slot_of(ids.size(), -1);  // (row, j) -> grouped position
  for (int e = 0; e < experts; ++e) {
    g.first[e] = static_cast<int64_t>(g.grouped_rows.size());
    if (!held[e]) continue;
    for (int64_t r = 0; r < rows; ++r) {
      for (int j = 0; j < k; ++j) {
        if (ids[r * k + j] != e) continue;
        slot_of[r * k + j] = static_cast<int32_t>(g.grouped_rows.size());
        g.grouped_rows.push_back(static_cast<int32_t>(r));
      }
    }
  }
  g.first[experts] = static_cast<int64_t>(g.grouped_rows.size());
  g.slots.resize(ids.size());
  g.weights.resize(ids.size());
  std::vector<int> order(k);
  for (int64_t r = 0; r < rows; ++r) {
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) { return ids[r * k + a] < ids[r * k + b]; });
    for (int j = 0; j < k; ++j) {
      g.slots[r * k + j] = slot_of[r * k + order[j]];
      g.weights[r * k + j] = weights[r * k + order[j]];
    }
  }
  return g;
}

}  // namespace tessera::models
