// Chaos under load: 200 requests stream through three replica groups while workers
// are SIGKILLed (and replaced) or SIGSTOPped (shorter and longer than the heartbeat
// timeout, then continued) at random, and the coordinator is killed and restarted once.
// Every request must end with its exact greedy tokens; an attempt may fail only with
// UNAVAILABLE and only while no coordinator could serve it; no attempt hangs; and
// afterwards every live worker serves again in a group whose KV pool is whole.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/serving_client.h"
#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera {
namespace {

using Clock = std::chrono::steady_clock;
using testing::LocalCluster;

constexpr int kRequests = 200;
constexpr int kClients = 12;
constexpr int kGroups = 3;
constexpr int kMaxTokens = 32;
constexpr auto kAttemptDeadline = std::chrono::seconds(60);
constexpr auto kGiveUp = std::chrono::seconds(120);  // a request's retries, all together

// One try at a request, as the client saw it.
struct Attempt {
  int request;
  Clock::time_point start, end;
  grpc::StatusCode code;
};

// The chaos thread's record: when the coordinator was down (killed, until its
// replacement listed a READY group again).
struct Outage {
  Clock::time_point start = Clock::time_point::max(), end = Clock::time_point::min();
};

int ReadyGroups(const v1::ServerInfo& info) {
  int ready = 0;
  for (const auto& g : info.groups()) ready += g.state() == "READY";
  return ready;
}

// Every group idle with its whole pool free (cached blocks count as free: no sequence
// holds them), every live worker in a READY group.
bool SettledAndWhole(const v1::ServerInfo& info, int live_workers) {
  int workers = 0;
  for (const auto& g : info.groups()) {
    if (g.state() != "READY" || g.running_requests() != 0 || g.waiting_requests() != 0) return false;
    if (g.free_kv_blocks() != g.total_kv_blocks()) return false;
    workers += g.workers_size();
  }
  return workers == live_workers && info.registered_workers() == live_workers;
}

// The last `n` lines of a file that do not contain `skip` (if given), for a failure's
// message.
std::string Tail(const std::string& path, size_t n, const std::string& skip = "") {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!skip.empty() && line.find(skip) != std::string::npos) continue;
    lines.push_back(line);
    if (lines.size() > n) lines.pop_front();
  }
  std::string text;
  for (const std::string& line : lines) text += line + "\n";
  return text;
}

TEST(ChaosTest, KilledStoppedWorkersAndARestartedCoordinatorLoseNoRequest) {
  const uint32_t seed = std::random_device()();
  SCOPED_TRACE("seed " + std::to_string(seed));
  LocalCluster cluster({testing::GoldenModelDir("llama"), kGroups, {}, {"--step-delay-ms", "10"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(kGroups));

  std::mt19937 prompt_rng(seed);
  std::vector<std::vector<int32_t>> prompts(kRequests);
  for (auto& p : prompts) {
    p.resize(3 + prompt_rng() % 28);
    for (auto& t : p) t = static_cast<int32_t>(prompt_rng() % 320);
  }

  // Clients, as a careful user writes one: wait for the server to be reachable, retry
  // UNAVAILABLE after a short pause, a deadline on every attempt.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  auto stub = v1::TesseraService::NewStub(
      grpc::CreateCustomChannel(cluster.address(), grpc::InsecureChannelCredentials(), args));
  std::vector<testing::Outcome> results(kRequests);
  std::vector<Attempt> attempts;
  std::mutex attempts_mu;
  std::atomic<int> next{0}, done{0};
  auto client = [&] {
    for (int i = next++; i < kRequests; i = next++) {
      for (const Clock::time_point give_up = Clock::now() + kGiveUp; Clock::now() < give_up;) {
        grpc::ClientContext ctx;
        ctx.set_wait_for_ready(true);
        ctx.set_deadline(std::chrono::system_clock::now() + kAttemptDeadline);
        const Clock::time_point start = Clock::now();
        results[i] = testing::Generate(*stub, testing::GreedyIds(prompts[i], kMaxTokens), &ctx);
        const grpc::StatusCode code = results[i].status.error_code();
        {
          std::lock_guard lock(attempts_mu);
          attempts.push_back({i, start, Clock::now(), code});
        }
        if (code != grpc::StatusCode::UNAVAILABLE) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      ++done;
    }
  };

  std::vector<std::thread> threads;
  for (int c = 0; c < kClients; ++c) threads.emplace_back(client);

  // Chaos, one event at a time, only while at least two groups are READY (so one can
  // always serve), and a coordinator restart once a third of the requests are done.
  // On this thread: a process dies with the thread that started it (PR_SET_PDEATHSIG).
  Outage outage;
  int kills = 0, short_stops = 0, long_stops = 0;
  {
    std::mt19937 rng(seed + 1);
    bool restarted = false;
    while (done < kRequests) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 300));
      if (!restarted && done >= kRequests / 3) {
        outage.start = Clock::now();
        cluster.RestartCoordinator();
        if (!cluster.WaitForReadyGroups(1)) break;  // the checks below fail
        outage.end = Clock::now();
        restarted = true;
        continue;
      }
      if (ReadyGroups(cluster.Info()) < 2 || cluster.workers().empty()) continue;
      const pid_t victim = cluster.workers()[rng() % cluster.workers().size()];
      if (rng() % 2 == 0) {
        cluster.Signal(victim, SIGKILL, /*wait=*/true);
        cluster.AddWorker();
        ++kills;
      } else {
        // The heartbeat timeout is 1.5 s: a short stop only stalls the group's steps,
        // a long one gets the worker dropped, and it registers again when continued.
        const int stop_ms = 200 + static_cast<int>(rng() % 2800);
        cluster.Signal(victim, SIGSTOP, /*wait=*/false);
        std::this_thread::sleep_for(std::chrono::milliseconds(stop_ms));
        cluster.Signal(victim, SIGCONT, /*wait=*/false);
        ++(stop_ms < 1500 ? short_stops : long_stops);
      }
    }
  }
  for (auto& t : threads) t.join();
  std::cout << "chaos: " << kills << " kills, " << short_stops << " short and " << long_stops
            << " long stops, 1 coordinator restart, " << attempts.size() << " attempts\n";
  ASSERT_LT(outage.start, outage.end) << "the restarted coordinator never listed a READY group";

  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  ASSERT_TRUE(model.ok()) << model.status();
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(results[i].status.ok()) << "request " << i << ": " << results[i].status.error_message();
    EXPECT_EQ(results[i].tokens, testing::Reference(**model, prompts[i], kMaxTokens)) << "request " << i;
  }
  int failed = 0;
  for (const Attempt& a : attempts) {
    if (a.code == grpc::StatusCode::OK) continue;
    ++failed;
    EXPECT_EQ(a.code, grpc::StatusCode::UNAVAILABLE) << "request " << a.request;
    EXPECT_TRUE(a.start <= outage.end && a.end >= outage.start)
        << "request " << a.request << " was UNAVAILABLE while the coordinator was up";
  }
  std::cout << failed << " attempts failed during the coordinator's outage\n";

  // Every worker still alive ends up in a READY group again, with its pool whole.
  v1::ServerInfo info;
  const int live = static_cast<int>(cluster.workers().size());
  for (int i = 0; i < 300 && !SettledAndWhole(info = cluster.Info(), live); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(SettledAndWhole(info, live))
      << live << " live workers; " << info.DebugString() << "\nthe workers' log, last lines:\n"
      << Tail(cluster.log_dir() + "/workers.log", 60) << "the coordinator's, but for finished requests:\n"
      << Tail(cluster.log_dir() + "/coordinator.log", 80, "request finished");
}

// Worker ids start again with a restarted coordinator. A worker that registered with
// the one before, heartbeating under an id the new one has given to another worker,
// is told to register again rather than taken for that worker (the chaos test above
// once ended with such a worker left out of every group, unseen).
TEST(ChaosTest, AHeartbeatUnderAnotherWorkersIdIsNotThatWorkers) {
  testing::LocalClusterOptions options;
  options.model_dir = testing::GoldenModelDir("llama");
  options.workers = 0;
  options.internal_port = true;
  LocalCluster cluster(options);
  auto stub = v1::internal::Coordinator::NewStub(
      grpc::CreateChannel(cluster.internal_address(), grpc::InsecureChannelCredentials()));
  // tp 2 with one worker: it stays registered, waiting for a partner (no group forms).
  v1::internal::RegisterRequest registration;
  registration.set_address("127.0.0.1:7");
  registration.set_tp(2);
  v1::internal::RegisterResponse registered;
  grpc::ClientContext register_context;
  ASSERT_TRUE(stub->Register(&register_context, registration, &registered).ok());
  auto heartbeat = [&](const std::string& address) {
    v1::internal::HeartbeatRequest request;
    request.set_worker_id(registered.worker_id());
    request.set_address(address);
    v1::internal::HeartbeatResponse response;
    grpc::ClientContext context;
    EXPECT_TRUE(stub->Heartbeat(&context, request, &response).ok());
    return response.known();
  };
  EXPECT_TRUE(heartbeat("127.0.0.1:7"));
  EXPECT_FALSE(heartbeat("127.0.0.1:8"));  // another worker's, under the same id
  EXPECT_TRUE(heartbeat(""));              // a worker that does not say (older): as before
  EXPECT_EQ(cluster.Info().registered_workers(), 1);
}

}  // namespace
}  // namespace tessera
