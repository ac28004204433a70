// Tier 1 of the deployment tests: a cluster spread over nodes that are network
// namespaces on one switch (tests/netns/nodes.sh via NodesTest: real IPs, node names
// in each node's /etc/hosts, a blackhole route for the subnet, everything removed
// afterwards). The coordinator runs on node0, workers on the others; clients and the
// load generator (tessera-bench serve) run on node0 too.
#include <signal.h>
#include <sys/wait.h>

#include <future>
#include <thread>

#include <gtest/gtest.h>

#include "tests/netns/nodes_fixture.h"

namespace tessera::testing {
namespace {

class ClusterNetnsTest : public NodesTest {
 protected:
  ClusterNetnsTest() : NodesTest(5) {}
};

bool Running(std::future<int>& load) { return load.wait_for(std::chrono::seconds(0)) == std::future_status::timeout; }

// A TP=2 group spanning node1 and node2, a worker behind a 100 Mbit/s link (node3) and
// one behind a 20 ms delay line (node4): every group serves, every answer is exact.
TEST_F(ClusterNetnsTest, GenerationIsExactOverCappedDelayedAndSpanningLinks) {
  ASSERT_TRUE(Sh(NodesScript() + " cap 3 100mbit"));
  ASSERT_TRUE(Sh(NodesScript() + " delay 4 20"));
  StartCoordinator();
  StartWorker(1, {"--tp", "2", "--group", "spanning"});
  StartWorker(2, {"--tp", "2", "--group", "spanning"});
  StartWorker(3);
  StartWorker(4);
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  std::vector<std::vector<int32_t>> prompts;
  for (int r = 0; r < 9; ++r) {
    prompts.emplace_back();
    for (int i = 0; i < 20 + r; ++i) prompts.back().push_back((r * 31 + i * 7) % 320);
  }
  std::vector<std::future<std::string>> served;
  for (size_t r = 0; r < prompts.size(); ++r) {
    served.push_back(std::async(std::launch::async, [&, r] { return Client(prompts[r], 12, "req" + std::to_string(r)); }));
  }
  for (size_t r = 0; r < prompts.size(); ++r) EXPECT_EQ(served[r].get(), GoldenReference(prompts[r], 12)) << "request " << r;
  const nlohmann::json info = Info();
  ASSERT_EQ(info["groups"].size(), 3u);
  for (const auto& g : info["groups"]) EXPECT_GT(JsonInt(g["prefixCacheLookups"]), 0) << g.dump();  // it admitted some
}

// node2 is cut off the switch under load: its group is dropped after the heartbeat
// timeout and its requests are recomputed on node1; healed, its worker rejoins.
TEST_F(ClusterNetnsTest, APartitionedNodeLosesNoRequestAndRejoinsWhenHealed) {
  StartCoordinator();
  StartWorker(1, {"--step-delay-ms", "20"});
  StartWorker(2, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(24, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ASSERT_TRUE(Running(load)) << "the load ended before the partition";
  ASSERT_TRUE(Sh(NodesScript() + " partition 2"));
  ASSERT_TRUE(WaitForReadyGroups(1)) << "logs in " << dir_;
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  ASSERT_TRUE(Sh(NodesScript() + " heal 2"));
  EXPECT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
}

TEST_F(ClusterNetnsTest, ANodeKilledMidLoadLosesNoRequest) {
  StartCoordinator();
  for (int node : {1, 2, 3}) StartWorker(node, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(30, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ASSERT_TRUE(Running(load)) << "the load ended before the kill";
  ASSERT_TRUE(Sh("ip netns pids tessera-node2 | xargs -r kill -9"));  // the whole node dies
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  EXPECT_TRUE(WaitForReadyGroups(2));
}

// 2 -> 3 -> 1 groups under load: a node joins, then two drain (SIGTERM), and no
// request fails.
TEST_F(ClusterNetnsTest, ScalingTwoToThreeToOneGroupsUnderLoadFailsNothing) {
  StartCoordinator();
  const pid_t w1 = StartWorker(1, {"--step-delay-ms", "20"});
  const pid_t w2 = StartWorker(2, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(48, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  StartWorker(3, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  ASSERT_TRUE(Running(load)) << "the load ended before the drains";
  kill(w1, SIGTERM);
  kill(w2, SIGTERM);
  ASSERT_TRUE(WaitForReadyGroups(1)) << "logs in " << dir_;
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  for (pid_t w : {w1, w2}) {
    int status = 0;
    waitpid(w, &status, 0);
    std::erase(pids_, w);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a drained worker exits 0";
  }
}

}  // namespace
}  // namespace tessera::testing
