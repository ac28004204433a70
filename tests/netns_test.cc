// Parallelism and the KV store across nodes that are network namespaces
// (tests/netns/nodes.sh via NodesTest): a tensor-parallel group whose two ranks'
// collectives really cross an interface, and a KV prefix one node's worker computed,
// fetched by another node's group over the data plane.
#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/netns/nodes_fixture.h"

namespace tessera::testing {
namespace {

class NetnsTest : public NodesTest {
 protected:
  NetnsTest() : NodesTest(2) {}
};

TEST_F(NetnsTest, TensorParallelRanksAcrossAnInterface) {
  StartCoordinator({"--tp", "2"});
  StartWorker(0);
  StartWorker(1);
  const int64_t rx_before = RxBytes(1);
  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35};
  EXPECT_EQ(Client(prompt, 16, "client"), GoldenReference(prompt, 16)) << "logs in " << dir_;
  // Step streams, weights loading and the all-reduces crossed the link.
  EXPECT_GT(RxBytes(1) - rx_before, 10000);
}

// A KV prefix cached by a group on node0 is fetched over the link by a group on node1
// (the bulk data plane between the workers' block servers) instead of being
// recomputed, and the output is exact.
TEST_F(NetnsTest, RemotePrefixFetchCrossesNodes) {
  StartCoordinator({"--host-kv-blocks", "64", "--block-size", "16"});
  StartWorker(0, {"--step-delay-ms", "25"});
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 43 + 17) % 320;
  auto with = [&](std::initializer_list<int32_t> tail) {
    std::vector<int32_t> p = prefix;
    p.insert(p.end(), tail);
    return p;
  };
  ASSERT_NE(Client(with({1}), 4, "first"), "failed") << "logs in " << dir_;  // cached on node0
  StartWorker(1);
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    const nlohmann::json info = Info();
    ready = ReadyGroups() == 2 && JsonInt(info.value("kvIndex", nlohmann::json::object()).value("entries", nlohmann::json())) >= 4;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(ready) << "logs in " << dir_;
  // node0's group busy with a long request on the same prefix (1.5 s of steps at
  // least): the next one goes to node1.
  auto busy = std::async(std::launch::async, [&] { return Client(with({7}), 60, "busy"); });
  auto running = [&] {
    const nlohmann::json info = Info();
    for (const auto& g : info.value("groups", nlohmann::json::array())) {
      if (g.value("runningRequests", 0) > 0) return true;
    }
    return false;
  };
  for (int i = 0; i < 100 && !running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  const int64_t rx_before = RxBytes(1);
  const std::vector<int32_t> second = with({5, 6});
  EXPECT_EQ(Client(second, 16, "second"), GoldenReference(second, 16)) << "logs in " << dir_;
  const int64_t rx = RxBytes(1) - rx_before;
  EXPECT_NE(busy.get(), "failed");
  int64_t fetched = 0;
  const nlohmann::json info = Info();
  for (const auto& g : info["groups"]) fetched += JsonInt(g.value("remoteFetchedBlocks", nlohmann::json()));
  EXPECT_EQ(fetched, 4) << info.dump();
  auto model = models::Model::Load(GoldenModelDir("llama"));
  const int64_t block_bytes = (*model)->KvLayoutFor(16, KvDtype::kF32).block_bytes();
  EXPECT_GT(rx, 4 * block_bytes);  // the blocks came over the link
}

}  // namespace
}  // namespace tessera::testing
