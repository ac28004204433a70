#include <set>

#include <gtest/gtest.h>

#include "kvstore/block_allocator.h"
#include "kvstore/kv_layout.h"

namespace tessera::kvstore {
namespace {

TEST(BlockAllocatorTest, AllocatesUntilFullThenReportsExhausted) {
  BlockAllocator a(3);
  std::set<int32_t> got;
  for (int i = 0; i < 3; ++i) {
    auto b = a.Allocate();
    ASSERT_TRUE(b.ok());
    got.insert(*b);
  }
  EXPECT_EQ(got, (std::set<int32_t>{0, 1, 2}));
  auto none = a.Allocate();
  EXPECT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  a.Release(1);
  EXPECT_EQ(*a.Allocate(), 1);
}

TEST(BlockAllocatorTest, SharedBlocksFreeAtLastRelease) {
  BlockAllocator a(1);
  const int32_t b = *a.Allocate();
  a.AddRef(b);
  EXPECT_EQ(a.ref_count(b), 2);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 0);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 1);
}

TEST(BlockTableTest, GrowsByBlocksAndFrees) {
  BlockAllocator a(4);
  BlockTable t;
  ASSERT_TRUE(t.EnsureCapacity(17, 16, a).ok());
  EXPECT_EQ(t.blocks().size(), 2u);
  ASSERT_TRUE(t.EnsureCapacity(32, 16, a).ok());
  EXPECT_EQ(t.blocks().size(), 2u);
  EXPECT_EQ(t.EnsureCapacity(100, 16, a).code(), absl::StatusCode::kResourceExhausted);
  t.Free(a);
  EXPECT_EQ(a.num_free(), 4);
  EXPECT_TRUE(t.blocks().empty());
}

TEST(KvLayoutTest, OffsetsFollowTheDesignLayout) {
  KvLayout l{/*num_layers=*/3, /*num_kv_heads=*/2, /*head_dim=*/8, /*block_size=*/4};
  EXPECT_EQ(l.kv_elems(), 2 * 4 * 8);
  EXPECT_EQ(l.block_elems(), 3 * 2 * 2 * 4 * 8);
  EXPECT_EQ(l.k_offset(1), 2 * 2 * 4 * 8);
  EXPECT_EQ(l.v_offset(1), l.k_offset(1) + 2 * 4 * 8);
}

}  // namespace
}  // namespace tessera::kvstore
