// The MoE layers' grouping of routed rows by expert (models/moe_routing.h), which the
// CPU and GPU layers share: contiguous blocks per held expert, and each row's outputs
// listed in expert order (the order both sum them in).
#include "models/moe_routing.h"

#include <gtest/gtest.h>

namespace tessera::models {
namespace {

TEST(MoeRoutingTest, GroupsRowsByExpertAndListsEachRowsOutputsInExpertOrder) {
  // 3 rows, top-2 of 4 experts; row 0 picked 2 before 0 (by weight).
  const std::vector<int32_t> ids = {2, 0, 1, 3, 0, 1};
  const std::vector<float> weights = {0.7f, 0.3f, 0.6f, 0.4f, 0.5f, 0.5f};
  const MoeRouting g = GroupByExpert(ids, weights, 3, 2, {true, true, true, true});
  // expert 0: rows 0, 2; expert 1: rows 1, 2; expert 2: row 0; expert 3: row 1.
  EXPECT_EQ(g.grouped_rows, (std::vector<int32_t>{0, 2, 1, 2, 0, 1}));
  EXPECT_EQ(g.first, (std::vector<int64_t>{0, 2, 4, 5, 6}));
  // Row 0: expert 0 (slot 0, 0.3) then expert 2 (slot 4, 0.7).
  EXPECT_EQ(g.slots, (std::vector<int32_t>{0, 4, 2, 5, 1, 3}));
  EXPECT_EQ(g.weights, (std::vector<float>{0.3f, 0.7f, 0.6f, 0.4f, 0.5f, 0.5f}));
}

TEST(MoeRoutingTest, ExpertsAnotherRankHoldsAreLeftOut) {
  const std::vector<int32_t> ids = {2, 0, 1, 3};
  const std::vector<float> weights = {0.7f, 0.3f, 0.6f, 0.4f};
  const MoeRouting g = GroupByExpert(ids, weights, 2, 2, {true, false, true, false});  // EP rank 0 of 2
  EXPECT_EQ(g.grouped_rows, (std::vector<int32_t>{0, 0}));
  EXPECT_EQ(g.first, (std::vector<int64_t>{0, 1, 1, 2, 2}));
  EXPECT_EQ(g.slots, (std::vector<int32_t>{0, 1, -1, -1}));
}

}  // namespace
}  // namespace tessera::models
