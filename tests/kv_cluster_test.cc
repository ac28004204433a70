// The distributed KV store end to end, with real coordinator and worker processes on
// loopback: remote prefix fetches between groups (also across tensor-parallel
// layouts), the cluster-wide block index losing a killed worker's entries, and the
// index rebuilt from the workers after a coordinator restart. Outputs are checked
// against the single-process greedy reference of the float32 golden LLaMA.
#include <signal.h>

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/test_certificates.h"
#include "tests/serving_client.h"

namespace tessera::testing {
namespace {

std::string GoldenLlama() { return GoldenModelDir("llama"); }

// A 64-token prefix (four 16-token blocks) followed by `tail`.
std::vector<int32_t> WithPrefix(std::initializer_list<int32_t> tail) {
  std::vector<int32_t> p(64);
  for (int i = 0; i < 64; ++i) p[i] = (i * 41 + 13) % 320;
  p.insert(p.end(), tail);
  return p;
}

template <typename Pred>
bool WaitFor(const LocalCluster& cluster, Pred pred, std::chrono::seconds timeout = std::chrono::seconds(30)) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (pred(cluster.Info())) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

const v1::GroupInfo* GroupWith(const v1::ServerInfo& info, const std::string& worker) {
  for (const auto& g : info.groups()) {
    for (const auto& w : g.workers()) {
      if (w == worker) return &g;
    }
  }
  return nullptr;
}

// Serves `first` (so its group caches the prefix), then keeps that group busy with a
// long request sharing the prefix (which the router sends there), so that `second`
// goes to another group. Returns `second`'s outcome.
Outcome ServeElsewhere(LocalCluster& cluster, const std::vector<int32_t>& first, const std::vector<int32_t>& second,
                       int first_group_ranks) {
  auto stub = cluster.Stub();
  const Outcome a = Generate(*stub, GreedyIds(first, 4));
  EXPECT_TRUE(a.status.ok()) << a.status.error_message();
  // Every rank's host tier reports the written-through blocks with its next heartbeat.
  EXPECT_TRUE(WaitFor(cluster, [&](const v1::ServerInfo& i) { return i.kv_index().entries() >= 4 * first_group_ranks; }));
  auto busy = std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), GreedyIds(WithPrefix({7}), 60)); });
  EXPECT_TRUE(WaitFor(cluster, [](const v1::ServerInfo& i) {
    for (const auto& g : i.groups()) {
      if (g.running_requests() > 0) return true;
    }
    return false;
  }));
  const Outcome b = Generate(*stub, GreedyIds(second, 16));
  EXPECT_TRUE(busy.get().status.ok());
  return b;
}

const std::vector<std::string> kHostTier = {"--host-kv-blocks", "64", "--block-size", "16"};

// Two groups; the second is served a prefix the first computed, fetched over the KV
// data plane.
void ExpectAPrefixFetchedFromAnotherGroup(LocalClusterOptions options) {
  LocalCluster cluster(std::move(options));
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  const std::vector<int32_t> second = WithPrefix({5, 6});
  const Outcome o = ServeElsewhere(cluster, WithPrefix({1}), second, 1);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.usage.cached_tokens(), 64);
  EXPECT_EQ(o.tokens, Reference(**model, second, 16));
  int64_t fetched = 0;
  const v1::ServerInfo info = cluster.Info();
  for (const auto& g : info.groups()) fetched += g.remote_fetched_blocks();
  EXPECT_EQ(fetched, 4);
  // The data plane's bytes reach the coordinator with the next heartbeats: the four
  // blocks, fetched by one worker and served by the other.
  v1::ServerInfo bytes = cluster.Info();
  for (int i = 0; i < 100 && (bytes.kv_bytes_fetched() == 0 || bytes.kv_bytes_sent() == 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bytes = cluster.Info();
  }
  EXPECT_GT(bytes.kv_bytes_fetched(), 0);
  EXPECT_EQ(bytes.kv_bytes_fetched(), bytes.kv_bytes_sent());
  EXPECT_EQ(bytes.kv_bytes_fetched() % 4, 0);
}

TEST(KvStoreTest, AGroupFetchesAPrefixAnotherGroupHolds) {
  ExpectAPrefixFetchedFromAnotherGroup({GoldenLlama(), 2, kHostTier, {"--step-delay-ms", "10"}});
}

// The same with the internal plane on mutual TLS: the data plane's connections too.
TEST(KvStoreTest, AGroupFetchesAPrefixOverMutualTls) {
  const std::string& certs = testing::TestCertificates();
  const std::vector<std::string> tls = {"--internal-tls-ca",  certs + "/ca.pem",   "--internal-tls-cert",
                                        certs + "/node.pem", "--internal-tls-key", certs + "/node.key"};
  LocalClusterOptions options{GoldenLlama(), 2, kHostTier, {"--step-delay-ms", "10"}};
  options.internal_port = true;
  options.coordinator_flags.insert(options.coordinator_flags.end(), tls.begin(), tls.end());
  options.worker_flags.insert(options.worker_flags.end(), tls.begin(), tls.end());
  ExpectAPrefixFetchedFromAnotherGroup(std::move(options));
}

TEST(KvStoreTest, CacheWrittenAtTp2IsReadAtTp1) {
  LocalCluster cluster({GoldenLlama(), 0, kHostTier, {"--step-delay-ms", "10"}});
  cluster.AddWorker({"--tp", "2"});
  cluster.AddWorker({"--tp", "2"});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  cluster.AddWorker();  // the coordinator's default: a TP=1 group
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  // Both groups idle and cold: the first request goes to the first group (TP=2).
  const std::vector<int32_t> second = WithPrefix({8, 9, 10});
  const Outcome o = ServeElsewhere(cluster, WithPrefix({2}), second, 2);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.usage.cached_tokens(), 64);
  EXPECT_EQ(o.tokens, Reference(**model, second, 16));
  const v1::ServerInfo info = cluster.Info();
  const v1::GroupInfo* tp1 = GroupWith(info, "worker-3");
  ASSERT_NE(tp1, nullptr);
  EXPECT_EQ(tp1->workers_size(), 1);
  EXPECT_EQ(tp1->remote_fetched_blocks(), 4);  // every head, from the two TP=2 ranks
}

// An int8 cache: its blocks (values and per-token scales together) written by a TP=2
// group are fetched by a TP=1 group, which continues from them as a single process
// with an int8 cache does; both groups report the dtype and their block bytes.
TEST(KvStoreTest, Int8BlocksMoveBetweenTp2AndTp1Groups) {
  std::vector<std::string> flags = kHostTier;
  flags.insert(flags.end(), {"--kv-cache-dtype", "int8"});
  LocalCluster cluster({GoldenLlama(), 0, flags, {"--step-delay-ms", "10"}});
  cluster.AddWorker({"--tp", "2"});
  cluster.AddWorker({"--tp", "2"});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  cluster.AddWorker();
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  const std::vector<int32_t> second = WithPrefix({11, 12});
  const Outcome o = ServeElsewhere(cluster, WithPrefix({3}), second, 2);
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.usage.cached_tokens(), 64);
  EXPECT_EQ(o.tokens, Reference(**model, second, 16, KvDtype::kInt8));
  const v1::ServerInfo info = cluster.Info();
  const v1::GroupInfo* tp1 = GroupWith(info, "worker-3");
  const v1::GroupInfo* tp2 = GroupWith(info, "worker-1");
  ASSERT_NE(tp1, nullptr);
  ASSERT_NE(tp2, nullptr);
  EXPECT_EQ(tp1->remote_fetched_blocks(), 4);
  const kvstore::KvLayout whole = (*model)->KvLayoutFor(16, KvDtype::kInt8);
  EXPECT_EQ(tp1->kv_cache_dtype(), "int8");
  EXPECT_EQ(tp1->kv_block_bytes(), whole.block_bytes());
  EXPECT_EQ(tp2->kv_cache_dtype(), "int8");
  EXPECT_EQ(tp2->kv_block_bytes(), whole.block_bytes() / 2);  // each rank holds half the heads
}

TEST(KvStoreTest, AKilledWorkersBlocksLeaveTheIndexAndRequestsComplete) {
  LocalCluster cluster({GoldenLlama(), 2, kHostTier});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  auto stub = cluster.Stub();
  ASSERT_TRUE(Generate(*stub, GreedyIds(WithPrefix({1}), 4)).status.ok());  // to the first group
  ASSERT_TRUE(WaitFor(cluster, [](const v1::ServerInfo& i) {
    return i.kv_index().blocks() >= 4 && i.kv_index().workers() == 2;
  }));
  cluster.Signal(cluster.workers()[0], SIGKILL, /*wait=*/true);
  // Fetching from the dead worker fails (or the index already dropped it): recomputed.
  const std::vector<int32_t> again = WithPrefix({3, 4});
  const Outcome o = Generate(*stub, GreedyIds(again, 16));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens, Reference(**model, again, 16));
  EXPECT_TRUE(WaitFor(cluster, [](const v1::ServerInfo& i) { return i.kv_index().workers() == 1; }));
  // Only the survivor's blocks are left: the ones it computed for `again`.
  const v1::ServerInfo info = cluster.Info();
  ASSERT_EQ(info.groups_size(), 1);
  EXPECT_EQ(info.groups(0).remote_fetched_blocks(), 0);
}

TEST(KvStoreTest, ARestartedCoordinatorRebuildsTheIndexFromTheWorkers) {
  LocalCluster cluster({GoldenLlama(), 1, kHostTier});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  ASSERT_TRUE(Generate(*cluster.Stub(), GreedyIds(WithPrefix({1}), 4)).status.ok());
  ASSERT_TRUE(WaitFor(cluster, [](const v1::ServerInfo& i) { return i.kv_index().blocks() >= 4; }));
  const int64_t blocks = cluster.Info().kv_index().blocks();

  cluster.RestartCoordinator();
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  ASSERT_TRUE(WaitFor(cluster, [&](const v1::ServerInfo& i) { return i.kv_index().blocks() == blocks; }));
  EXPECT_GE(cluster.Info().kv_index().resyncs(), 1);  // it asked the worker for a snapshot
  // The worker kept its host tier through the reload; the new scheduler uses it.
  const std::vector<int32_t> again = WithPrefix({6});
  const Outcome o = Generate(*cluster.Stub(), GreedyIds(again, 16));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.usage.cached_tokens(), 64);
  EXPECT_EQ(o.tokens, Reference(**model, again, 16));
  EXPECT_GE(cluster.Info().groups(0).swapped_in_blocks(), 4);
}

}  // namespace
}  // namespace tessera::testing
