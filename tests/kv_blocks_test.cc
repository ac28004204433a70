#include <cmath>
#include <set>

#include <gtest/gtest.h>

#include "kvstore/block_allocator.h"
#include "kvstore/block_hash.h"
#include "kvstore/head_slice.h"
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
  EXPECT_EQ(l.head_bytes(), 4 * 8 * 4);
  EXPECT_EQ(l.kv_bytes(), 2 * 4 * 8 * 4);
  EXPECT_EQ(l.block_bytes(), 3 * 2 * 2 * 4 * 8 * 4);
  EXPECT_EQ(l.k_offset(1), 2 * 2 * 4 * 8 * 4);
  EXPECT_EQ(l.v_offset(1), l.k_offset(1) + 2 * 4 * 8 * 4);
}

// A head record is the values, then the scales: bf16 half of f32, int8 a quarter plus
// a float per token, fp8 a quarter plus one float.
TEST(KvLayoutTest, RecordBytesPerDtype) {
  KvLayout l{/*num_layers=*/2, /*num_kv_heads=*/4, /*head_dim=*/64, /*block_size=*/16};
  const int64_t f32 = l.block_bytes();
  l.dtype = KvDtype::kBf16;
  EXPECT_EQ(l.block_bytes() * 2, f32);
  l.dtype = KvDtype::kF16;
  EXPECT_EQ(l.block_bytes() * 2, f32);
  l.dtype = KvDtype::kInt8;
  EXPECT_EQ(l.head_bytes(), 16 * 64 + 16 * 4);
  l.dtype = KvDtype::kFp8E4m3;
  EXPECT_EQ(l.head_bytes(), 16 * 64 + 4);
  EXPECT_EQ(KvRecordBytes(KvDtype::kInt8, 3, 3), 12 + 12);  // values padded to 4 bytes
}

// A head slice carries its heads' scales: decoding a token from the slice gives what
// the whole block gives (the data plane moves slices between TP layouts).
TEST(KvLayoutTest, HeadSlicesCarryTheirScales) {
  for (KvDtype dtype : {KvDtype::kInt8, KvDtype::kFp8E4m3, KvDtype::kBf16}) {
    const KvLayout full{/*num_layers=*/2, /*num_kv_heads=*/4, /*head_dim=*/8, /*block_size=*/4, dtype};
    std::vector<std::byte> block(full.block_bytes());
    for (int part = 0; part < 2 * full.num_layers; ++part) {
      for (int h = 0; h < full.num_kv_heads; ++h) {
        for (int slot = 0; slot < full.block_size; ++slot) {
          float x[8];
          for (int d = 0; d < 8; ++d) x[d] = static_cast<float>((part + 1) * (h + 1) * (d - 3.5) * (slot + 1));
          EncodeKvToken(dtype, x, 8, 4, slot, block.data() + part * full.kv_bytes() + h * full.head_bytes());
        }
      }
    }
    KvLayout two = full;
    two.num_kv_heads = 2;
    std::vector<std::byte> slice(SliceBytes(full, 2));
    CopySliceOut(full, block.data(), 2, 2, slice.data());
    for (int part = 0; part < 2 * full.num_layers; ++part) {
      for (int slot = 0; slot < full.block_size; ++slot) {
        float from_block[8], from_slice[8];
        DecodeKvToken(dtype, block.data() + part * full.kv_bytes() + 3 * full.head_bytes(), 8, 4, slot, from_block);
        DecodeKvToken(dtype, slice.data() + part * two.kv_bytes() + 1 * two.head_bytes(), 8, 4, slot, from_slice);
        EXPECT_EQ(std::vector<float>(from_block, from_block + 8), std::vector<float>(from_slice, from_slice + 8))
            << KvDtypeName(dtype) << " part " << part << " slot " << slot;
      }
    }
  }
}

// E4M3: every finite code survives decode and encode; rounding is to nearest even and
// saturates; an fp8 record raises its scale for a larger token and keeps the earlier
// ones; int8 keeps a scale per token.
TEST(KvDtypeTest, E4m3RoundTripsAndRounds) {
  for (int q = 0; q < 256; ++q) {
    if ((q & 0x7f) == 0x7f) continue;  // NaN
    EXPECT_EQ(FloatToE4m3(E4m3ToFloat(static_cast<uint8_t>(q))), q) << q;
  }
  EXPECT_EQ(E4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(E4m3ToFloat(0x01), 0x1p-9f);  // the smallest subnormal
  EXPECT_EQ(FloatToE4m3(1e6f), 0x7e);
  EXPECT_EQ(FloatToE4m3(-1e6f), 0xfe);
  EXPECT_EQ(E4m3ToFloat(FloatToE4m3(1.0625f)), 1.0f);    // halfway between 1 and 1.125: even
  EXPECT_EQ(E4m3ToFloat(FloatToE4m3(1.1875f)), 1.25f);   // halfway between 1.125 and 1.25: even
  EXPECT_EQ(E4m3ToFloat(FloatToE4m3(1.07f)), 1.125f);
}

TEST(KvDtypeTest, Fp8RecordRaisesItsScale) {
  constexpr int kDim = 4, kBlock = 4;
  std::vector<std::byte> record(KvRecordBytes(KvDtype::kFp8E4m3, kBlock, kDim));
  const float small[kDim] = {0.5f, -0.25f, 0.125f, 0.0f}, large[kDim] = {100.0f, -50.0f, 3.0f, 1.0f};
  EncodeKvToken(KvDtype::kFp8E4m3, small, kDim, kBlock, 0, record.data());
  EncodeKvToken(KvDtype::kFp8E4m3, large, kDim, kBlock, 1, record.data());
  float got[kDim];
  DecodeKvToken(KvDtype::kFp8E4m3, record.data(), kDim, kBlock, 0, got);
  for (int i = 0; i < kDim; ++i) EXPECT_NEAR(got[i], small[i], 0.0625 * std::fabs(small[i]) + 1e-3) << i;
  // small's values were re-encoded at the raised scale, exactly: 0.5 and 0.125 are
  // representable at any power-of-two scale that keeps them normal.
  EXPECT_EQ(got[0], 0.5f);
  EXPECT_EQ(got[2], 0.125f);
  DecodeKvToken(KvDtype::kFp8E4m3, record.data(), kDim, kBlock, 1, got);
  for (int i = 0; i < kDim; ++i) EXPECT_NEAR(got[i], large[i], 0.0625 * std::fabs(large[i])) << i;
  // A slot written again from 0 (a reused block) starts a new scale.
  EncodeKvToken(KvDtype::kFp8E4m3, small, kDim, kBlock, 0, record.data());
  DecodeKvToken(KvDtype::kFp8E4m3, record.data(), kDim, kBlock, 0, got);
  EXPECT_EQ(got[0], 0.5f);
}

TEST(KvDtypeTest, Int8KeepsAScalePerToken) {
  constexpr int kDim = 4, kBlock = 2;
  std::vector<std::byte> record(KvRecordBytes(KvDtype::kInt8, kBlock, kDim));
  const float a[kDim] = {0.01f, -0.02f, 0.005f, 0.0f}, b[kDim] = {127.0f, -63.5f, 1.0f, 0.4f};
  EncodeKvToken(KvDtype::kInt8, a, kDim, kBlock, 0, record.data());
  EncodeKvToken(KvDtype::kInt8, b, kDim, kBlock, 1, record.data());
  float got[kDim];
  DecodeKvToken(KvDtype::kInt8, record.data(), kDim, kBlock, 0, got);
  for (int i = 0; i < kDim; ++i) EXPECT_NEAR(got[i], a[i], 1.01f * 0.02f / 254) << i;  // half a's own step
  DecodeKvToken(KvDtype::kInt8, record.data(), kDim, kBlock, 1, got);
  EXPECT_EQ(got[0], 127.0f);
  EXPECT_EQ(got[2], 1.0f);
  EXPECT_EQ(got[3], 0.0f);  // 0.4 rounds to the step 0 of 1.0
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
