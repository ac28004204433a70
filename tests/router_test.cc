// The router on load snapshots: the prefix a group holds against the work queued there,
// groups too small for the request skipped, ties spread round robin.
#include "coordinator/router.h"

#include <gtest/gtest.h>

#include <set>

namespace tessera::coordinator {
namespace {

TEST(RouterTest, ThePrefixHeldWeighsAgainstTheQueue) {
  Router router;
  // Group 1 holds 64 tokens of the prefix but has 100 queued; group 2 is idle.
  EXPECT_EQ(router.Pick(std::vector<GroupLoad>{{0, 0, 1000}, {64, 100, 1000}, {0, 10, 1000}}, 80), 0u);
  EXPECT_EQ(router.Pick(std::vector<GroupLoad>{{0, 50, 1000}, {64, 10, 1000}}, 80), 1u);
}

TEST(RouterTest, GroupsTooSmallAreSkippedAndNoneFitsIsNullopt) {
  Router router;
  const std::vector<GroupLoad> groups = {{500, 0, 100}, {0, 30, 4000}};
  EXPECT_EQ(router.Pick(groups, 200), 1u);         // group 0 would save more but cannot hold it
  EXPECT_EQ(router.Pick(groups, 4000), std::nullopt);  // the next token needs room too
  EXPECT_EQ(router.Pick({}, 1), std::nullopt);
}

TEST(RouterTest, TiesGoRoundRobin) {
  Router router;
  const std::vector<GroupLoad> idle(3, GroupLoad{0, 0, 1000});
  std::set<size_t> picked;
  for (int i = 0; i < 3; ++i) picked.insert(*router.Pick(idle, 10));
  EXPECT_EQ(picked.size(), 3u);
}

}  // namespace
}  // namespace tessera::coordinator
