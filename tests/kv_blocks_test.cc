#include <set>

#include <gtest/gtest.h>

#include "kvstore/block_allocator.h"
#include "kvstore/block_hash.h"
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

namespace tessera::kvstore {
namespace {

// The test vectors of docs/kv-blocks.md (also checked there with Python's hashlib).
TEST(BlockHashTest, MatchesTheDocumentedVectors) {
  const BlockHash root = RootHash("tessera-tiny-llama", "f32", "");
  EXPECT_EQ(ToHex(root), "4c9ad18dfaaf0e42000d78c9c2d28ae64bda2fc0aa020abe36f11ad3908cdccd");
  const std::vector<int32_t> first = {1, 2, 3, 4}, second = {5, 6, 7, 8};
  const BlockHash b1 = ChainHash(root, first);
  EXPECT_EQ(ToHex(b1), "4e0de6edbc4804b22e93de2c4c162f44d1c0edc2b8b2992c6683b3ccbbc92d15");
  EXPECT_EQ(ToHex(ChainHash(b1, second)), "52a0d22c7a26e6ba5e1c548c06ce0a38b47e22c36ac3fd23027849237cf1995c");
  EXPECT_EQ(ToHex(RootHash("tessera-tiny-llama", "f32", "tenant-a")),
            "d82a225f34662448760bccbcec5a0593cc067635da765340a8b9bde287a59891");
}

TEST(BlockHashTest, LengthPrefixesKeepFieldsApart) {
  // "ab" + "c" and "a" + "bc" must not collide.
  EXPECT_NE(RootHash("ab", "c", ""), RootHash("a", "bc", ""));
  const std::vector<int32_t> t = {1};
  EXPECT_NE(ChainHash(RootHash("m", "f32", ""), t), ChainHash(RootHash("m", "bf16", ""), t));
}

TEST(PrefixCacheTest, ReleasedBlocksStayCachedUntilSpaceIsNeeded) {
  BlockAllocator a(2);
  const BlockHash h1 = RootHash("m", "f32", "1"), h2 = RootHash("m", "f32", "2");
  const int32_t b1 = *a.Allocate(), b2 = *a.Allocate();
  a.Register(b1, h1);
  a.Register(b2, h2);
  a.Release(b1);
  a.Release(b2);
  EXPECT_EQ(a.num_free(), 2);   // cached blocks can still be handed out
  EXPECT_EQ(a.num_cached(), 2);
  // A hit takes the block back with its content.
  EXPECT_EQ(a.Lookup(h2), b2);
  EXPECT_EQ(a.ref_count(b2), 1);
  EXPECT_EQ(a.num_free(), 1);
  // Allocation evicts the least recently used cached block, only when needed.
  EXPECT_EQ(*a.Allocate(), b1);
  EXPECT_EQ(a.evictions(), 1);
  EXPECT_FALSE(a.Lookup(h1).has_value());
  EXPECT_EQ(a.lookups(), 2);
  EXPECT_EQ(a.hits(), 1);
}

TEST(PrefixCacheTest, SharedBlocksAreRefcounted) {
  BlockAllocator a(1);
  const BlockHash h = RootHash("m", "f32", "");
  const int32_t b = *a.Allocate();
  a.Register(b, h);
  EXPECT_EQ(a.Lookup(h), b);  // a second sequence shares it
  EXPECT_EQ(a.ref_count(b), 2);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 0);
  a.Release(b);
  EXPECT_EQ(a.num_free(), 1);
}

TEST(PrefixCacheTest, AdoptedBlocksAreCachedAndNeverHandedOutFresh) {
  BlockAllocator a(3);
  const BlockHash h1 = RootHash("m", "f32", "1"), h2 = RootHash("m", "f32", "2");
  const std::pair<int32_t, BlockHash> kept[] = {{2, h1}, {0, h2}, {1, h2}};  // the second h2 is skipped
  a.AdoptCached(kept);
  EXPECT_EQ(a.num_cached(), 2);
  EXPECT_EQ(a.num_free(), 3);
  EXPECT_EQ(*a.Allocate(), 1);  // the never-cached block goes first
  EXPECT_EQ(a.Lookup(h1), 2);
  EXPECT_EQ(a.Lookup(h2), 0);
}

}  // namespace
}  // namespace tessera::kvstore
