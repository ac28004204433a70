// KvCacheManager on its own: prefix hashing, reuse across the device and host tiers,
// write-through and the copies it plans, and per-tenant salts.
#include "kvstore/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace tessera::kvstore {
namespace {

KvCacheOptions Options(int32_t device_blocks, int32_t host_blocks) {
  KvCacheOptions o;
  o.block_size = 4;
  o.num_blocks = device_blocks;
  o.num_host_blocks = host_blocks;
  o.model_identity = "model";
  return o;
}

std::vector<int32_t> Tokens(int n, int first = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// Runs a sequence of `tokens` through the cache as a scheduler would: takes its cached
// prefix, allocates the rest, computes everything, frees. Returns the cached tokens.
int64_t ServeOnce(KvCacheManager& cache, const std::vector<int32_t>& tokens, const std::string& salt = "") {
  SequenceBlocks seq;
  seq.salt = salt;
  const int64_t cached = cache.TakeCachedPrefix(seq, cache.PrefixHashes(tokens, salt));
  EXPECT_TRUE(cache.EnsureCapacity(seq, static_cast<int64_t>(tokens.size())).ok());
  cache.RegisterFullBlocks(seq, tokens, static_cast<int64_t>(tokens.size()));
  cache.Free(seq);
  return cached;
}

TEST(KvCacheManagerTest, PrefixHashesSkipTheBlockOfTheLastToken) {
  KvCacheManager cache(Options(16, 0));
  EXPECT_EQ(cache.PrefixHashes(Tokens(8), "").size(), 1u);  // tokens 0-3; the block of token 7 is computed
  EXPECT_EQ(cache.PrefixHashes(Tokens(9), "").size(), 2u);
  EXPECT_NE(cache.PrefixHashes(Tokens(9), "a"), cache.PrefixHashes(Tokens(9), "b"));  // tenants never share
}

TEST(KvCacheManagerTest, ReusesDeviceBlocksAndCountsHits) {
  KvCacheManager cache(Options(16, 0));
  EXPECT_EQ(ServeOnce(cache, Tokens(13)), 0);
  EXPECT_EQ(ServeOnce(cache, Tokens(13)), 12);
  EXPECT_EQ(ServeOnce(cache, Tokens(13), "other tenant"), 0);
  EXPECT_EQ(cache.CachedTokens(cache.PrefixHashes(Tokens(13), "")), 12);
  const KvCacheManager::Counters c = cache.counters();
  EXPECT_EQ(c.hits, 3);
  EXPECT_EQ(c.free_blocks, 16);
}

TEST(KvCacheManagerTest, WritesThroughAndSwapsBackFromTheHostTier) {
  KvCacheManager cache(Options(/*device_blocks=*/4, /*host_blocks=*/16));
  EXPECT_EQ(ServeOnce(cache, Tokens(13)), 0);
  KvCacheManager::TierMoves moves = cache.TakeMoves();
  EXPECT_EQ(moves.swap_out.size(), 3u);  // every full block written through
  EXPECT_TRUE(moves.swap_in.empty());
  EXPECT_EQ(ServeOnce(cache, Tokens(13, 100)), 0);  // another prompt evicts the first from the device
  (void)cache.TakeMoves();
  EXPECT_EQ(ServeOnce(cache, Tokens(13)), 12);  // found on the host: copied back up
  moves = cache.TakeMoves();
  EXPECT_EQ(moves.swap_in.size(), 3u);
  EXPECT_EQ(cache.counters().swapped_in, 3);
}

TEST(KvCacheManagerTest, FetchesNeedABlockIndexAndFailedOnesAreComputed) {
  KvCacheManager cache(Options(16, 0));
  SequenceBlocks seq;
  const std::vector<int32_t> tokens = Tokens(13);
  ASSERT_TRUE(cache.EnsureCapacity(seq, 13).ok());
  EXPECT_FALSE(cache.PlanFetch(seq, cache.PrefixHashes(tokens, "")).has_value());  // no index: nothing to fetch
  seq.fetching = cache.PrefixHashes(tokens, "");
  EXPECT_EQ(cache.FinishFetch(seq, /*ok=*/false), 0);
  EXPECT_EQ(cache.counters().remote_fetch_failures, 1);
  seq.fetching = cache.PrefixHashes(tokens, "");
  EXPECT_EQ(cache.FinishFetch(seq, /*ok=*/true), 12);
  EXPECT_EQ(cache.counters().remote_fetched, 3);
  cache.Free(seq);
}

}  // namespace
}  // namespace tessera::kvstore
