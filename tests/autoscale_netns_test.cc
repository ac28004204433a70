// Tier 1 of autoscaling (docs/deploy.md): an autoscaler loop that reads the
// coordinator's /metrics, as the chart's KEDA ScaledObject or HPA would, adds replica
// groups on other nodes (network namespaces) when requests queue and drains them when
// the load falls. Groups follow the load, no request fails, and the time from the
// first overloaded scrape to a new group serving is reported.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "common/http_client.h"
#include "tests/local_cluster.h"
#include "tests/netns/autoscaler.h"
#include "tests/netns/nodes_fixture.h"

namespace tessera::testing {
namespace {

using std::chrono::milliseconds;
using Clock = Autoscaler::Clock;

TEST(AutoscalerTest, ParsesTheSeriesTheChartScalesOn) {
  const auto s = ParseLoadSample(
      "# HELP tessera:num_requests_waiting Requests waiting for a batch.\n"
      "tessera:num_requests_waiting{model_name=\"llama\"} 7\n"
      "tessera:num_requests_waiting_total 99\n"
      "tessera:kv_cache_usage_perc{model_name=\"llama\"} 0.25\n"
      "tessera:group_ready{group=\"g0\"} 1\n"
      "tessera:group_ready{group=\"g1\"} 0\n"
      "tessera:group_ready{group=\"g2\"} 1\n");
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->waiting, 7);
  EXPECT_EQ(s->kv_usage, 0.25);
  EXPECT_EQ(s->ready_groups, 2);
  EXPECT_FALSE(ParseLoadSample("tessera:num_requests_waiting 1\n").has_value());
}

TEST(AutoscalerTest, ScalesUpAtOnceAndDownAfterTheWindow) {
  Autoscaler scaler({.min_groups = 1, .max_groups = 4, .waiting_per_group = 4, .kv_usage = 0.5,
                     .scale_down_stabilization = milliseconds(2000)});
  const Clock::time_point t0 = Clock::now();
  EXPECT_EQ(scaler.Propose({.waiting = 9, .kv_usage = 0}, 1), 3);   // ceil(9 / 4)
  EXPECT_EQ(scaler.Propose({.waiting = 0, .kv_usage = 0.8}, 2), 4);  // ceil(2 * 0.8 / 0.5)
  EXPECT_EQ(scaler.Propose({.waiting = 90, .kv_usage = 0}, 1), 4);   // at most max_groups
  EXPECT_EQ(scaler.Propose({.waiting = 0, .kv_usage = 0}, 3), 1);    // at least min_groups
  EXPECT_EQ(scaler.Decide({.waiting = 9}, 1, t0), 3);
  EXPECT_EQ(scaler.Decide({.waiting = 0}, 3, t0 + milliseconds(500)), 3);  // 3 was asked for in the window
  EXPECT_EQ(scaler.Decide({.waiting = 0}, 3, t0 + milliseconds(2600)), 1);
}

class AutoscaleNetnsTest : public NodesTest {
 protected:
  static constexpr int kMaxGroups = 3;  // one worker per node, nodes 1..3
  AutoscaleNetnsTest() : NodesTest(kMaxGroups + 1) {}
};

TEST_F(AutoscaleNetnsTest, GroupsFollowTheLoadWithNoFailedRequest) {
  StartCoordinator({"--http-listen", "0.0.0.0:0", "--http-port-file", dir_ + "/http_port", "--max-running", "2"});
  const std::string http_port = WaitForPortFile(dir_ + "/http_port");
  ASSERT_FALSE(http_port.empty()) << "logs in " << dir_;
  // Steps slowed so that two prompts per group and a dozen clients make a queue.
  const std::vector<std::string> worker_flags = {"--step-delay-ms", "20"};
  std::vector<pid_t> groups = {StartWorker(1, worker_flags)};
  ASSERT_TRUE(WaitForReadyGroups(1)) << "logs in " << dir_;

  std::atomic<bool> stop = false;
  std::atomic<int> most_groups = 1;  // read while the loop runs
  int scale_ups = 0, scale_downs = 0, drain_failures = 0;
  double overload_to_serving_s = -1;
  std::thread loop([&] {
    // The loop scrapes from node0, where the coordinator's HTTP port is.
    const int netns = open("/run/netns/tessera-node0", O_RDONLY);
    if (netns < 0 || setns(netns, CLONE_NEWNET) != 0) return;
    close(netns);
    Autoscaler scaler({.min_groups = 1, .max_groups = kMaxGroups, .waiting_per_group = 4, .kv_usage = 0.9,
                       .scale_down_stabilization = milliseconds(2000)});
    std::vector<pid_t> draining;
    std::optional<Clock::time_point> overloaded;  // the scrape that asked for more groups
    while (!stop) {
      std::this_thread::sleep_for(milliseconds(200));
      for (auto it = draining.begin(); it != draining.end();) {
        int status = 0;
        if (waitpid(*it, &status, WNOHANG) == 0) {
          ++it;
          continue;
        }
        drain_failures += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);  // a drain exits 0
        it = draining.erase(it);
      }
      const HttpResult metrics = HttpFetch("10.77.3.10", std::stoi(http_port), "GET", "/metrics");
      const std::optional<LoadSample> load = ParseLoadSample(metrics.body);
      if (!load) continue;
      const int current = static_cast<int>(groups.size());
      if (overloaded && load->ready_groups >= current) {
        if (overload_to_serving_s < 0) {
          overload_to_serving_s = std::chrono::duration<double>(Clock::now() - *overloaded).count();
        }
        overloaded.reset();
      }
      const int desired = scaler.Decide(*load, current, Clock::now());
      if (desired > current) {
        if (!overloaded) overloaded = Clock::now();
        ++scale_ups;
        while (static_cast<int>(groups.size()) < desired) {
          groups.push_back(StartWorker(static_cast<int>(groups.size()) + 1, worker_flags));
        }
      } else if (desired < current) {
        ++scale_downs;
        while (static_cast<int>(groups.size()) > desired) {  // the newest first, as a StatefulSet
          kill(groups.back(), SIGTERM);
          draining.push_back(groups.back());
          groups.pop_back();
        }
      }
      most_groups = std::max(most_groups.load(), static_cast<int>(groups.size()));
    }
    for (pid_t p : draining) waitpid(p, nullptr, 0);
  });

  // Rising: one client, then a dozen; falling: one client while groups drain.
  EXPECT_EQ(Load(8, 1, "quiet"), 0);
  EXPECT_EQ(Load(120, 12, "peak"), 0);
  const int groups_at_peak_end = most_groups;
  EXPECT_EQ(Load(60, 1, "falling"), 0);
  bool back_to_one = false;
  for (int i = 0; i < 100 && !back_to_one; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    back_to_one = ReadyGroups() == 1;
  }
  stop = true;
  loop.join();

  EXPECT_GE(groups_at_peak_end, 2) << "the queue did not add a group; logs in " << dir_;
  EXPECT_TRUE(back_to_one) << "groups did not drain after the load fell; logs in " << dir_;
  EXPECT_GE(scale_downs, 1);
  EXPECT_EQ(drain_failures, 0) << "a drained worker did not exit cleanly; logs in " << dir_;
  ASSERT_GE(overload_to_serving_s, 0) << "no new group became ready; logs in " << dir_;
  std::printf("autoscaler: up to %d groups (%d scale-ups, %d scale-downs); overload to a new group serving: %.2f s\n",
              most_groups.load(), scale_ups, scale_downs, overload_to_serving_s);
  RecordProperty("overload_to_serving_ms", static_cast<int>(overload_to_serving_s * 1000));
}

}  // namespace
}  // namespace tessera::testing
