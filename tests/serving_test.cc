// The served system end to end: a real coordinator and workers on loopback, driven
// through the public gRPC API. Exactness checks use the float32 golden LLaMA, whose
// output does not depend on how requests are batched; text checks use the bundled
// model and its tokenizer.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "grpc/health/v1/health.grpc.pb.h"
#include "tessera/v1/admin.grpc.pb.h"
#include "models/generate.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/serving_client.h"
#include "nlohmann/json.hpp"
#include "tests/safetensors_writer.h"

namespace tessera {
namespace {

using testing::Generate;
using testing::GreedyIds;
using testing::LocalCluster;
using testing::LocalClusterOptions;
using testing::Outcome;
using testing::Reference;

std::string GoldenLlama() { return testing::GoldenModelDir("llama"); }
std::string Bundled() { return testing::TestDataDir() + "/../../assets/models/tessera-tiny-llama"; }

// Prompts of 3..30 tokens over the golden vocabulary.
std::vector<std::vector<int32_t>> Prompts(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> prompts(n);
  for (auto& p : prompts) {
    p.resize(3 + rng() % 28);
    for (auto& t : p) t = static_cast<int32_t>(rng() % 320);
  }
  return prompts;
}

// Runs every request concurrently, one thread each.
std::vector<Outcome> RunConcurrently(LocalCluster& cluster, const std::vector<v1::GenerateRequest>& requests) {
  std::vector<std::future<Outcome>> futures;
  for (const auto& r : requests) {
    futures.push_back(std::async(std::launch::async, [&cluster, r] { return Generate(*cluster.Stub(), r); }));
  }
  std::vector<Outcome> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

// Waits until the server lists `groups` groups that all have running requests.
bool WaitUntilGroupsBusy(const LocalCluster& cluster, int groups) {
  for (int i = 0; i < 200; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const v1::ServerInfo info = cluster.Info();
    bool busy = info.groups_size() == groups;
    for (const auto& g : info.groups()) busy = busy && g.running_requests() > 0;
    if (busy) return true;
  }
  return false;
}

// Every outcome succeeded with the single-process greedy reference of its prompt.
void ExpectExact(const std::vector<Outcome>& outcomes, const std::vector<std::vector<int32_t>>& prompts, int n,
                 models::Model& model) {
  ASSERT_EQ(outcomes.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.error_message();
    EXPECT_EQ(outcomes[i].tokens, Reference(model, prompts[i], n)) << "request " << i;
  }
}

TEST(ServingTest, ServedTextEqualsTheCli) {
  LocalCluster cluster({Bundled(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto stub = cluster.Stub();
  v1::GenerateRequest r;
  r.set_text("In the beginning");
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(24);
  const Outcome served = Generate(*stub, r);
  ASSERT_TRUE(served.status.ok()) << served.status.error_message();
  EXPECT_GT(served.messages, 1) << "tokens should stream, not arrive at once";

  auto model = models::Model::Load(Bundled());
  ASSERT_TRUE(model.ok());
  grpc::ClientContext ctx;
  v1::TokenizeRequest tr;
  tr.set_text("In the beginning");
  v1::TokenizeResponse ids;
  ASSERT_TRUE(stub->Tokenize(&ctx, tr, &ids).ok());
  std::vector<int32_t> prompt(ids.ids().begin(), ids.ids().end());
  std::vector<int32_t> expected = Reference(**model, prompt, 24);
  // The served stream stops at EOS (2047) and returns it; the CLI reference does not stop.
  auto eos = std::find(expected.begin(), expected.end(), 2047);
  if (eos != expected.end()) expected.erase(eos + 1, expected.end());
  EXPECT_EQ(served.tokens, expected);
  EXPECT_EQ(served.usage.prompt_tokens(), static_cast<int>(prompt.size()));
  EXPECT_EQ(served.usage.completion_tokens(), static_cast<int>(expected.size()));

  grpc::ClientContext dctx;
  v1::DetokenizeRequest dr;
  dr.mutable_ids()->Add(served.tokens.begin(), served.tokens.end());
  v1::DetokenizeResponse text;
  ASSERT_TRUE(stub->Detokenize(&dctx, dr, &text).ok());
  EXPECT_EQ(served.text, text.text());
}

// A worker with --weight-cache writes the cache after its first load and reads it on
// the next (GetServerInfo says which), serving the same tokens either way.
TEST(ServingTest, WorkersReadTheWeightCacheOnTheirNextStart) {
  const std::string cache = testing::MakeTempDir("serving_weight_cache");
  auto model = models::Model::Load(Bundled());
  ASSERT_TRUE(model.ok());
  const std::vector<int32_t> prompt = Prompts(1, 5)[0];
  for (const char* expected : {"writing", "hit"}) {
    LocalCluster cluster({Bundled(), 1, {}, {"--weight-cache", cache}});
    ASSERT_TRUE(cluster.WaitForReadyGroups(1));
    const v1::ServerInfo info = cluster.Info();
    ASSERT_EQ(info.groups(0).worker_weight_cache_size(), 1);
    EXPECT_EQ(info.groups(0).worker_weight_cache(0), expected);
    auto stub = cluster.Stub();
    const Outcome served = Generate(*stub, GreedyIds(prompt, 12));
    ASSERT_TRUE(served.status.ok()) << served.status.error_message();
    EXPECT_EQ(served.tokens, Reference(**model, prompt, 12)) << expected;
    // The file is complete (renamed into place) before the worker is stopped.
    auto written = [&] {
      for (const auto& entry : std::filesystem::directory_iterator(cache)) {
        if (entry.path().extension() == ".weights") return true;
      }
      return false;
    };
    for (int i = 0; i < 300 && !written(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_TRUE(written());
  }
}

TEST(ServingTest, ThirtyTwoConcurrentStreamsAreExact) {
  LocalCluster cluster({GoldenLlama(), 2});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  ASSERT_TRUE(model.ok());
  const auto prompts = Prompts(32, 1);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 16));
  const std::vector<Outcome> outcomes = RunConcurrently(cluster, requests);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.error_message();
    EXPECT_EQ(outcomes[i].tokens, Reference(**model, prompts[i], 16)) << "request " << i;
    EXPECT_EQ(outcomes[i].reason, v1::FINISH_REASON_LENGTH);
  }
}

TEST(ServingTest, SeededSamplingRepeatsExactly) {
  LocalCluster cluster({Bundled(), 2});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  v1::GenerateRequest r;
  r.set_text("And God said");
  auto* s = r.mutable_sampling();
  s->set_temperature(0.9f);
  s->set_top_p(0.95f);
  s->set_top_k(50);
  s->set_repetition_penalty(1.1f);
  s->set_seed(1234);
  s->set_max_tokens(32);
  s->set_ignore_eos(true);
  auto stub = cluster.Stub();
  const Outcome a = Generate(*stub, r), b = Generate(*stub, r);
  ASSERT_TRUE(a.status.ok() && b.status.ok());
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.text, b.text);
  s->set_seed(99);
  EXPECT_NE(Generate(*stub, r).tokens, a.tokens);
}

TEST(ServingTest, CancellingAStreamFreesItsBlocks) {
  LocalCluster cluster({Bundled(), 1, {}, {"--step-delay-ms", "20"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  const int total = cluster.Info().groups(0).total_kv_blocks();
  auto stub = cluster.Stub();
  v1::GenerateRequest r = GreedyIds(std::vector<int32_t>(200, 65), 300);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, r);
  v1::GenerateResponse msg;
  ASSERT_TRUE(reader->Read(&msg));
  EXPECT_LT(cluster.Info().groups(0).free_kv_blocks(), total);
  ctx.TryCancel();
  while (reader->Read(&msg)) {
  }
  bool freed = false;
  for (int i = 0; i < 100 && !freed; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const auto g = cluster.Info().groups(0);
    freed = g.free_kv_blocks() == total && g.running_requests() == 0;
  }
  EXPECT_TRUE(freed);
}

TEST(ServingTest, BadRequestsGetTheirCodesWhileOthersStream) {
  LocalCluster cluster({GoldenLlama(), 1, {}, {"--step-delay-ms", "5"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  const std::vector<int32_t> good_prompt = {1, 2, 3, 4, 5};
  auto background = std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), GreedyIds(good_prompt, 60)); });

  auto stub = cluster.Stub();
  auto code = [&](const v1::GenerateRequest& r) { return Generate(*stub, r).status.error_code(); };
  using grpc::StatusCode;
  EXPECT_EQ(code(GreedyIds({}, 4)), StatusCode::INVALID_ARGUMENT);                      // empty prompt
  EXPECT_EQ(code(GreedyIds(std::vector<int32_t>(128, 7), 4)), StatusCode::INVALID_ARGUMENT);  // over-long
  EXPECT_EQ(code(GreedyIds({1, 320}, 4)), StatusCode::INVALID_ARGUMENT);                // id outside vocab
  v1::GenerateRequest r = GreedyIds({1, 2}, 4);
  r.mutable_sampling()->set_temperature(-1);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = GreedyIds({1, 2}, 4);
  r.mutable_sampling()->set_top_p(1.5f);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = GreedyIds({1, 2}, 4);
  r.mutable_sampling()->set_max_tokens(0);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = GreedyIds({1, 2}, 4);
  r.mutable_sampling()->set_top_logprobs(50);
  EXPECT_EQ(code(r), StatusCode::INVALID_ARGUMENT);
  r = GreedyIds({1, 2}, 4);
  r.set_model("no-such-model");
  EXPECT_EQ(code(r), StatusCode::NOT_FOUND);
  r = GreedyIds({1, 2}, 4);
  r.clear_token_ids();
  r.set_text("text needs a tokenizer");
  EXPECT_EQ(code(r), StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext actx;
  v1::AbortRequest abort;
  abort.set_request_id("nobody");
  v1::AbortResponse aborted;
  EXPECT_EQ(stub->Abort(&actx, abort, &aborted).error_code(), StatusCode::NOT_FOUND);

  const Outcome good = background.get();
  ASSERT_TRUE(good.status.ok()) << good.status.error_message();
  EXPECT_EQ(good.tokens, Reference(**model, good_prompt, 60));
}

TEST(ServingTest, FullQueueIsResourceExhausted) {
  LocalCluster cluster({GoldenLlama(), 1, {"--max-queue", "1", "--max-running", "1"}, {"--step-delay-ms", "10"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  std::vector<std::future<Outcome>> running;
  for (int i = 0; i < 2; ++i) {  // one runs, one waits: the queue is full
    running.push_back(std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), GreedyIds({1, 2, 3}, 40)); }));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(Generate(*cluster.Stub(), GreedyIds({1, 2, 3}, 4)).status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (auto& f : running) EXPECT_TRUE(f.get().status.ok());
}

TEST(ServingTest, StopStringsAndLogprobs) {
  LocalCluster cluster({Bundled(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto stub = cluster.Stub();
  v1::GenerateRequest r;
  r.set_text("And God said");
  r.mutable_sampling()->set_temperature(0);
  r.mutable_sampling()->set_max_tokens(40);
  const Outcome full = Generate(*stub, r);
  ASSERT_TRUE(full.status.ok());
  ASSERT_GT(full.text.size(), 12u);
  const std::string stop = full.text.substr(8, 4);
  r.mutable_sampling()->add_stop(stop);
  r.mutable_sampling()->set_logprobs(true);
  r.mutable_sampling()->set_top_logprobs(3);
  grpc::ClientContext ctx;
  auto reader = stub->Generate(&ctx, r);
  v1::GenerateResponse msg;
  std::string text;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  while (reader->Read(&msg)) {
    text += msg.text();
    ASSERT_EQ(msg.logprobs_size(), msg.token_ids_size());
    for (const auto& lp : msg.logprobs()) {
      ASSERT_EQ(lp.top_size(), 3);
      EXPECT_EQ(lp.top(0).token_id(), lp.token_id()) << "greedy picks the most likely token";
      EXPECT_LE(lp.logprob(), 0.0f);
    }
    if (msg.finish_reason()) reason = msg.finish_reason();
  }
  ASSERT_TRUE(reader->Finish().ok());
  EXPECT_EQ(reason, v1::FINISH_REASON_STOP_STRING);
  EXPECT_EQ(text, full.text.substr(0, full.text.find(stop)));
}

TEST(ServingTest, KilledWorkerLosesNoRequest) {
  LocalCluster cluster({GoldenLlama(), 2, {}, {"--step-delay-ms", "15"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(16, 2);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 60));
  auto results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, requests); });
  // Kill a worker while both groups hold running requests.
  ASSERT_TRUE(WaitUntilGroupsBusy(cluster, 2));
  cluster.Signal(cluster.workers()[0], SIGKILL, /*wait=*/true);
  const auto outcomes = results.get();
  ExpectExact(outcomes, prompts, 60, **model);
  EXPECT_EQ(cluster.Info().groups_size(), 1);
}

// A worker that stops heartbeating (SIGSTOP: its connections stay open) is dropped
// after the heartbeat timeout and its requests finish on the other worker.
TEST(ServingTest, SilentWorkerIsDroppedAndItsRequestsMove) {
  LocalCluster cluster({GoldenLlama(), 2, {}, {"--step-delay-ms", "15"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(8, 5);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 60));
  auto results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, requests); });
  ASSERT_TRUE(WaitUntilGroupsBusy(cluster, 2));
  const pid_t silent = cluster.workers()[0];
  cluster.Signal(silent, SIGSTOP, /*wait=*/false);
  const auto outcomes = results.get();
  ExpectExact(outcomes, prompts, 60, **model);
  EXPECT_EQ(cluster.Info().groups_size(), 1);
  cluster.Signal(silent, SIGKILL, /*wait=*/true);
}

TEST(ServingTest, JoiningWorkerTakesTrafficAndDrainingWorkerLosesNothing) {
  LocalCluster cluster({GoldenLlama(), 1, {}, {"--step-delay-ms", "15"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(16, 3);
  std::vector<v1::GenerateRequest> first, second;
  for (size_t i = 0; i < prompts.size(); ++i) (i < 8 ? first : second).push_back(GreedyIds(prompts[i], 50));
  auto first_results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, first); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const pid_t joined = cluster.AddWorker();
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto second_results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, second); });
  bool new_group_busy = false;
  for (int i = 0; i < 200 && !new_group_busy; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const v1::ServerInfo info = cluster.Info();
    for (const auto& g : info.groups()) {
      if (g.workers(0) == "worker-2" && g.running_requests() > 0) new_group_busy = true;
    }
  }
  EXPECT_TRUE(new_group_busy) << "the joined worker took no traffic";
  // Drain the first worker (SIGTERM) under load: it finishes its requests and exits 0.
  EXPECT_EQ(cluster.Signal(cluster.workers()[0], SIGTERM, /*wait=*/true), 0);
  auto all = first_results.get();
  for (auto& o : second_results.get()) all.push_back(std::move(o));
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(all[i].status.ok()) << all[i].status.error_message();
    EXPECT_EQ(all[i].tokens, Reference(**model, prompts[i], 50)) << "request " << i;
  }
  (void)joined;
}

// A KV pool too small for the offered load: sequences are preempted and recomputed,
// and every output is still exact.
TEST(ServingTest, PreemptionUnderKvPressureKeepsOutputsExact) {
  LocalCluster cluster({GoldenLlama(), 1, {"--kv-blocks", "12", "--block-size", "8"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(8, 4);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 40));
  const auto outcomes = RunConcurrently(cluster, requests);
  ExpectExact(outcomes, prompts, 40, **model);
}

// Mistral's sliding window (8 keys) bounds memory too: with a pool of two 16-token
// blocks, four sequences of 128 tokens (4x the pool) run at once to their end,
// exact, and the pool is whole afterwards.
TEST(ServingTest, SlidingWindowSequencesOutrunThePool) {
  const std::string mistral = testing::GoldenModelDir("mistral");
  LocalCluster cluster({mistral, 1, {"--kv-blocks", "2", "--block-size", "16"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(mistral);
  ASSERT_EQ((*model)->spec().kv_window(), 8);
  const auto prompts = Prompts(4, 9);
  std::vector<v1::GenerateRequest> requests;
  std::vector<int> lengths;
  for (const auto& p : prompts) {
    lengths.push_back(128 - static_cast<int>(p.size()));  // to the model's 128-token context
    requests.push_back(GreedyIds(p, lengths.back()));
  }
  const auto outcomes = RunConcurrently(cluster, requests);
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.error_message();
    EXPECT_EQ(outcomes[i].reason, v1::FINISH_REASON_LENGTH);
    EXPECT_EQ(outcomes[i].tokens, Reference(**model, prompts[i], lengths[i])) << "request " << i;
  }
  const v1::ServerInfo info = cluster.Info();
  ASSERT_EQ(info.groups_size(), 1);
  EXPECT_EQ(info.groups(0).total_kv_blocks(), 2);
  EXPECT_EQ(info.groups(0).free_kv_blocks(), 2);
}

// KV policies (docs/serving.md, "Bounded long context"): the server's sink-window (4
// sinks, 24-token window) and a request's own (2 sinks, 40 tokens) on a model without
// a window. In a pool of 16 blocks of 16, two sequences of 1034 tokens (4x the pool,
// 8x the model's 128 positions) run at once to max_tokens, exact against the CLI's
// bounded greedy decoding, while the pool never holds more than their sinks' and
// windows' blocks (GetServerInfo, polled), and is whole afterwards.
TEST(ServingTest, SinkWindowSequencesRunPastTheContextInFixedMemory) {
  LocalCluster cluster({GoldenLlama(), 1,
                        {"--kv-blocks", "16", "--block-size", "16", "--kv-policy", "sink-window", "--window", "24"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  const v1::ServerInfo before = cluster.Info();
  EXPECT_EQ(before.kv_policy().policy(), "sink-window");
  EXPECT_EQ(before.kv_policy().sink_tokens(), 4);
  EXPECT_EQ(before.kv_policy().window(), 24);
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(2, 11);
  const int n = 1024;
  std::vector<v1::GenerateRequest> requests = {GreedyIds(prompts[0], n), GreedyIds(prompts[1], n)};
  requests[1].mutable_kv_policy()->set_sink_tokens(2);
  requests[1].mutable_kv_policy()->set_window(40);
  const models::KvRetention policies[] = {{24, 4}, {40, 2}};

  std::atomic<bool> done{false};
  int32_t least_free = 16;
  std::thread poll([&] {
    while (!done) {
      least_free = std::min(least_free, cluster.Info().groups(0).free_kv_blocks());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  const auto outcomes = RunConcurrently(cluster, requests);
  done = true;
  poll.join();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.error_message();
    EXPECT_EQ(outcomes[i].reason, v1::FINISH_REASON_LENGTH);
    auto reference = models::GenerateGreedy(**model, prompts[i], {.max_new_tokens = n, .retention = policies[i]});
    ASSERT_TRUE(reference.ok()) << reference.status();
    EXPECT_EQ(outcomes[i].tokens, *reference) << "request " << i;
  }
  // Decoding, a sequence holds its sinks' block and the blocks its window and next token
  // touch: 1 + 3 and 1 + 4.
  EXPECT_GE(least_free, 16 - 4 - 5);
  EXPECT_EQ(cluster.Info().groups(0).free_kv_blocks(), 16);

  // A policy that does not parse is the request's error, named.
  for (const auto& [policy, window] : {std::pair{"bogus", 0}, std::pair{"full", 8}}) {
    v1::GenerateRequest bad = GreedyIds(prompts[0], 4);
    bad.mutable_kv_policy()->set_policy(policy);
    bad.mutable_kv_policy()->set_window(window);
    const Outcome o = Generate(*cluster.Stub(), bad);
    EXPECT_EQ(o.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << policy;
    EXPECT_NE(o.status.error_message().find("policy"), std::string::npos) << o.status.error_message();
  }
}

// Without a window, a sequence that outgrows the whole pool ends with what it has,
// and says why.
TEST(ServingTest, ASequenceLongerThanThePoolEndsWithKvCacheFull) {
  LocalCluster cluster({GoldenLlama(), 1, {"--kv-blocks", "2", "--block-size", "16"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  const std::vector<int32_t> prompt = Prompts(1, 10)[0];
  const Outcome o = Generate(*cluster.Stub(), GreedyIds(prompt, 100));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.reason, v1::FINISH_REASON_KV_CACHE_FULL);
  ASSERT_LT(o.tokens.size(), 32u);
  std::vector<int32_t> reference = Reference(**model, prompt, 100);
  reference.resize(o.tokens.size());
  EXPECT_EQ(o.tokens, reference);
  EXPECT_EQ(cluster.Info().groups(0).free_kv_blocks(), 2);
}

// A replica group of two tensor-parallel workers: every request exact, and each
// worker holds about half the weights.
TEST(ServingTest, TensorParallelGroupIsExact) {
  LocalCluster cluster({GoldenLlama(), 2, {"--tp", "2"}, {"--busy-poll"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  const v1::ServerInfo info = cluster.Info();
  ASSERT_EQ(info.groups_size(), 1);
  EXPECT_EQ(info.groups(0).workers_size(), 2);
  auto model = models::Model::Load(GoldenLlama());
  EXPECT_LT(info.groups(0).weight_bytes(), static_cast<int64_t>((*model)->weight_bytes()) * 3 / 4);
  const auto prompts = Prompts(8, 6);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 16));
  const auto outcomes = RunConcurrently(cluster, requests);
  ExpectExact(outcomes, prompts, 16, **model);
}

// Mixtral with its experts spread over two workers.
// Workers naming a group pair only with each other, whatever the registration order:
// a StatefulSet's pods (or one node's devices) make one tensor-parallel group.
// (A long heartbeat timeout: a worker dropped by a loaded CI machine would come back
// under a new name, and this test is about pairing, not failure detection.)
TEST(ServingTest, NamedGroupsFormFromTheirOwnWorkers) {
  LocalCluster cluster({GoldenLlama(), 0, {"--tp", "2", "--heartbeat-timeout-ms", "20000"}});
  for (const char* group : {"a", "b", "a", "b"}) {
    cluster.AddWorker({"--group", group});
    ASSERT_TRUE(cluster.WaitForRegistered(static_cast<int>(cluster.workers().size())));
  }
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  const v1::ServerInfo info = cluster.Info();
  std::set<std::set<std::string>> groups;
  for (const auto& g : info.groups()) groups.insert({g.workers().begin(), g.workers().end()});
  EXPECT_EQ(groups, (std::set<std::set<std::string>>{{"worker-1", "worker-3"}, {"worker-2", "worker-4"}}));
}

// A worker asked to run on a device it does not have fails its LoadModel with the
// reason and exits 1 instead of rejoining forever; the other worker keeps serving.
TEST(ServingTest, AWorkerWithoutItsDeviceExitsAndOthersServe) {
  LocalCluster cluster({GoldenLlama(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  cluster.AddWorker({"--device", "cuda:99"});
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 1);
  auto model = models::Model::Load(GoldenLlama());
  const Outcome o = Generate(*cluster.Stub(), GreedyIds({5, 6, 7}, 8));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens, Reference(**model, {5, 6, 7}, 8));
}

// Device flags a worker cannot take are refused at startup (exit 2); the cluster keeps
// serving.
TEST(ServingTest, AWorkerWithBadDeviceFlagsDoesNotStart) {
  LocalCluster cluster({GoldenLlama(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  cluster.AddWorker({"--device", "tpu:0"});
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 2);
  cluster.AddWorker({"--device", "cuda:0", "--gpu-collectives", "mpi"});
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 2);
  EXPECT_TRUE(Generate(*cluster.Stub(), GreedyIds({5, 6, 7}, 4)).status.ok());
}

// A worker asking for a tensor-parallel degree the model cannot split over is refused
// at registration with the reason and exits 2; the cluster keeps serving.
TEST(ServingTest, AWorkerAskingForAShapeTheModelCannotTakeIsRefused) {
  LocalCluster cluster({GoldenLlama(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  cluster.AddWorker({"--tp", "3"});
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 2);
  EXPECT_EQ(cluster.Info().registered_workers(), 1);
  EXPECT_TRUE(Generate(*cluster.Stub(), GreedyIds({5, 6, 7}, 4)).status.ok());
}

TEST(ServingTest, ExpertParallelGroupIsExact) {
  const std::string mixtral = testing::GoldenModelDir("mixtral");
  LocalCluster cluster({mixtral, 2, {"--ep", "2"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(mixtral);
  const auto prompts = Prompts(4, 7);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 16));
  const auto outcomes = RunConcurrently(cluster, requests);
  ExpectExact(outcomes, prompts, 16, **model);
}

// Killing one rank fails its group: its requests finish on the other group, exact.
TEST(ServingTest, LostRankFailsItsGroupAndRequestsMove) {
  LocalCluster cluster({GoldenLlama(), 4, {"--tp", "2"}, {"--step-delay-ms", "15"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto model = models::Model::Load(GoldenLlama());
  const auto prompts = Prompts(12, 8);
  std::vector<v1::GenerateRequest> requests;
  for (const auto& p : prompts) requests.push_back(GreedyIds(p, 50));
  auto results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, requests); });
  ASSERT_TRUE(WaitUntilGroupsBusy(cluster, 2));
  cluster.Signal(cluster.workers()[1], SIGKILL, /*wait=*/true);  // rank 1 of the first group
  const auto outcomes = results.get();
  ExpectExact(outcomes, prompts, 50, **model);
  EXPECT_EQ(cluster.Info().groups_size(), 1);
}

// --batch-invariant: a seeded request of the bf16 bundled model gives the tokens it
// gives alone when it runs among 31 others of mixed lengths, and when its worker is
// killed mid-run and it is recomputed on the other worker. (Without the flag, batches
// of 8 or more rows round activations to bf16 on AVX-512 BF16 CPUs, and tokens may
// depend on the batch.)
TEST(ServingTest, BatchInvariantRequestsGiveTheirSoloTokensInAnyBatch) {
  const auto prompts = Prompts(32, 9);
  std::vector<v1::GenerateRequest> requests;
  for (size_t i = 0; i < prompts.size(); ++i) {
    v1::GenerateRequest r;
    r.mutable_token_ids()->mutable_ids()->Add(prompts[i].begin(), prompts[i].end());
    auto* s = r.mutable_sampling();
    s->set_temperature(1.0f);
    s->set_top_p(0.95f);
    s->set_seed(1000 + i);
    s->set_max_tokens(30 + static_cast<int>(i % 4) * 10);  // mixed lengths: 30..60
    s->set_ignore_eos(true);
    requests.push_back(r);
  }
  std::vector<std::vector<int32_t>> alone;
  {
    LocalCluster cluster({Bundled(), 2, {"--batch-invariant", "1"}});
    ASSERT_TRUE(cluster.WaitForReadyGroups(2));
    const v1::ServerInfo info = cluster.Info();
    EXPECT_TRUE(info.batch_invariant());
    for (const auto& g : info.groups()) {
      ASSERT_EQ(g.worker_kernels_size(), 1);
      EXPECT_TRUE(g.worker_kernels(0).starts_with("cpu/")) << g.worker_kernels(0);
      // The load is reported: the whole of it, the weights alone, and what was read.
      EXPECT_GT(g.weight_load_seconds(), 0);
      EXPECT_GE(g.load_seconds(), g.weight_load_seconds());
      EXPECT_GE(g.load_bytes(), static_cast<int64_t>(std::filesystem::file_size(Bundled() + "/model.safetensors") / 2));
    }
    auto stub = cluster.Stub();
    for (const auto& r : requests) {
      const Outcome solo = Generate(*stub, r);
      ASSERT_TRUE(solo.status.ok()) << solo.status.error_message();
      alone.push_back(solo.tokens);
    }
    const std::vector<Outcome> together = RunConcurrently(cluster, requests);
    for (size_t i = 0; i < requests.size(); ++i) {
      ASSERT_TRUE(together[i].status.ok()) << together[i].status.error_message();
      EXPECT_EQ(together[i].tokens, alone[i]) << "request " << i << " among 31 others";
    }
  }
  LocalCluster cluster({Bundled(), 2, {"--batch-invariant", "1"}, {"--step-delay-ms", "15"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto results = std::async(std::launch::async, [&] { return RunConcurrently(cluster, requests); });
  ASSERT_TRUE(WaitUntilGroupsBusy(cluster, 2));
  cluster.Signal(cluster.workers()[0], SIGKILL, /*wait=*/true);
  const std::vector<Outcome> recomputed = results.get();
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(recomputed[i].status.ok()) << recomputed[i].status.error_message();
    EXPECT_EQ(recomputed[i].tokens, alone[i]) << "request " << i << " after its worker was killed";
  }
  EXPECT_EQ(cluster.Info().groups_size(), 1);
}

// A repeated 64-token prefix is served from the prefix cache: only the new tokens are
// computed, the output is the same, and a different cache salt shares nothing.
TEST(ServingTest, RepeatedPrefixComputesOnlyTheNewTokens) {
  LocalCluster cluster({GoldenLlama(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 37 + 11) % 320;
  std::vector<int32_t> first = prefix, second = prefix;
  first.insert(first.end(), {1, 2, 3});
  second.insert(second.end(), {4, 5, 6, 7});
  auto stub = cluster.Stub();
  const Outcome a = Generate(*stub, GreedyIds(first, 16));
  ASSERT_TRUE(a.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.usage.cached_tokens(), 0);
  const Outcome b = Generate(*stub, GreedyIds(second, 16));
  ASSERT_TRUE(b.status.ok()) << b.status.error_message();
  EXPECT_EQ(b.usage.cached_tokens(), 64);
  EXPECT_EQ(b.tokens, Reference(**model, second, 16));
  const v1::GroupInfo group = cluster.Info().groups(0);
  EXPECT_GE(group.prefix_cache_hits(), 4);
  EXPECT_GT(group.cached_blocks(), 0);

  v1::GenerateRequest salted = GreedyIds(second, 16);
  salted.set_cache_salt("another tenant");
  const Outcome c = Generate(*stub, salted);
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(c.usage.cached_tokens(), 0);
  EXPECT_EQ(c.tokens, b.tokens);
}

// A device pool too small to keep a prefix: it moves to the host tier and comes back
// for the next request with that prefix, whose output is exact.
TEST(ServingTest, HostTierServesPrefixesEvictedFromTheDevicePool) {
  LocalCluster cluster({GoldenLlama(), 1, {"--kv-blocks", "8", "--block-size", "16", "--host-kv-blocks", "32"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(GoldenLlama());
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 29 + 5) % 320;
  std::vector<int32_t> first = prefix, again = prefix;
  first.push_back(1);
  again.push_back(2);
  auto stub = cluster.Stub();
  ASSERT_TRUE(Generate(*stub, GreedyIds(first, 8)).status.ok());
  ASSERT_TRUE(Generate(*stub, GreedyIds(std::vector<int32_t>(100, 3), 8)).status.ok());  // evicts the prefix
  const Outcome o = Generate(*stub, GreedyIds(again, 16));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.usage.cached_tokens(), 64);
  EXPECT_EQ(o.tokens, Reference(**model, again, 16));
  const v1::GroupInfo g = cluster.Info().groups(0);
  EXPECT_GE(g.swapped_out_blocks(), 3);
  EXPECT_GE(g.swapped_in_blocks(), 3);
}

// With two groups, a request goes where its prefix is cached: the router weighs the
// cached prefix against the queued work.
TEST(ServingTest, RouterPrefersTheGroupHoldingThePrefix) {
  LocalCluster cluster({GoldenLlama(), 2, {}, {"--step-delay-ms", "10"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 53 + 7) % 320;
  std::vector<int32_t> first = prefix, second = prefix;
  first.push_back(1);
  second.push_back(2);
  // Keep one group busy so that `first` lands on the other one.
  auto busy = std::async(std::launch::async, [&] { return Generate(*cluster.Stub(), GreedyIds({9, 9, 9}, 40)); });
  bool running = false;
  for (int i = 0; i < 200 && !running; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    const v1::ServerInfo info = cluster.Info();
    for (const auto& g : info.groups()) running = running || g.running_requests() > 0;
  }
  ASSERT_TRUE(running);
  ASSERT_TRUE(Generate(*cluster.Stub(), GreedyIds(first, 4)).status.ok());
  ASSERT_TRUE(busy.get().status.ok());
  // Both groups idle now: only the cache can tell them apart.
  const Outcome o = Generate(*cluster.Stub(), GreedyIds(second, 4));
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(o.usage.cached_tokens(), 64);
}

// The Drain RPC: the named worker's group takes no new requests, and once idle the
// worker is released and exits 0; the other group keeps serving.
TEST(ServingTest, DrainRpcReleasesTheWorker) {
  LocalCluster cluster({GoldenLlama(), 2});
  ASSERT_TRUE(cluster.WaitForReadyGroups(2));
  auto admin = v1::AdminService::NewStub(cluster.Channel());
  grpc::ClientContext ctx;
  v1::DrainRequest drain;
  drain.set_worker_id("worker-1");
  v1::DrainResponse drained;
  ASSERT_TRUE(admin->Drain(&ctx, drain, &drained).ok());
  EXPECT_EQ(cluster.WaitForAnyWorkerExit(std::chrono::seconds(30)), 0);
  EXPECT_EQ(cluster.Info().groups_size(), 1);
  auto model = models::Model::Load(GoldenLlama());
  const Outcome o = Generate(*cluster.Stub(), GreedyIds({1, 2, 3}, 8));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens, Reference(**model, {1, 2, 3}, 8));
  grpc::ClientContext ctx2;
  drain.set_worker_id("no-such-worker");
  EXPECT_EQ(admin->Drain(&ctx2, drain, &drained).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(ServingTest, HealthServiceAnswers) {
  LocalCluster cluster({GoldenLlama(), 1});
  auto health = grpc::health::v1::Health::NewStub(
      grpc::CreateChannel(cluster.address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
}

// `tessera info` prints GetServerInfo as JSON, for operators and scripts.
TEST(ServingTest, InfoCommandPrintsTheServerStateAsJson) {
  LocalCluster cluster({GoldenLlama(), 1});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  const std::string out = testing::MakeTempDir("info") + "/info.json";
  const std::string cmd = std::string(TESSERA_CLI_PATH) + " info --address " + cluster.address() + " > " + out;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  const nlohmann::json info = nlohmann::json::parse(std::ifstream(out));
  EXPECT_EQ(info["model"], "llama");
  ASSERT_EQ(info["groups"].size(), 1u);
  EXPECT_EQ(info["groups"][0]["state"], "READY");
  EXPECT_TRUE(info.contains("kvIndex"));
}

TEST(ServingTest, NoWorkerMeansUnavailable) {
  LocalCluster cluster({GoldenLlama(), 0});
  EXPECT_EQ(Generate(*cluster.Stub(), GreedyIds({1, 2}, 2)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace tessera
