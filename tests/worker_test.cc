// The worker's parts on their own: the host tier, the step executor over a CPU engine,
// and the coordinator session against a scripted coordinator on loopback.
#include <grpcpp/grpcpp.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <thread>

#include "kvstore/host_tier.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/safetensors_writer.h"
#include "tests/serving_client.h"
#include "worker/coordinator_session.h"
#include "worker/engine.h"
#include "worker/step_executor.h"

namespace tessera::worker {
namespace {

constexpr int kBlockSize = 16;

kvstore::BlockHash HashOf(int i) {
  kvstore::BlockHash h{};
  std::memcpy(h.data(), &i, sizeof(i));
  return h;
}

// ---- the host tier

TEST(HostTierTest, StoresLoadsAndNumbersItsEvents) {
  const kvstore::KvLayout layout{2, 2, 4, 4, KvDtype::kFp8E4m3};  // records with their scales
  kvstore::HostTier tier;
  tier.Reset(layout, {0, 2}, 2, /*num_blocks=*/4);
  const int64_t bytes = layout.block_bytes();
  std::vector<std::byte> source(2 * bytes);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<std::byte>(i * 37);
  const kvstore::HostTier::Stored stored[] = {{1, HashOf(7)}, {3, HashOf(8)}};
  ASSERT_TRUE(tier.Store(stored, [&](std::span<std::byte* const> hosts) {
                    for (size_t i = 0; i < hosts.size(); ++i) std::memcpy(hosts[i], &source[i * bytes], bytes);
                    return absl::OkStatus();
                  }).ok());
  std::vector<std::byte> back(2 * bytes);
  const int32_t blocks[] = {1, 3};
  ASSERT_TRUE(tier.Load(blocks, [&](std::span<const std::byte* const> hosts) {
                    for (size_t i = 0; i < hosts.size(); ++i) std::memcpy(&back[i * bytes], hosts[i], bytes);
                    return absl::OkStatus();
                  }).ok());
  EXPECT_EQ(back, source);

  v1::internal::KvEvents events;
  tier.FillEvents("peer:1", &events);
  EXPECT_EQ(events.last_seq(), 2u);
  EXPECT_EQ(events.events_size(), 2);
  EXPECT_FALSE(events.snapshot());
  tier.Ack(2, /*resync=*/false);
  events.Clear();
  tier.FillEvents("peer:1", &events);
  EXPECT_EQ(events.events_size(), 0);  // acknowledged
  tier.Ack(2, /*resync=*/true);
  events.Clear();
  tier.FillEvents("peer:1", &events);
  EXPECT_TRUE(events.snapshot());
  EXPECT_EQ(events.events_size(), 2);  // everything held, for a coordinator that lost track

  // A failed write leaves the block holding nothing.
  const kvstore::HostTier::Stored overwrite[] = {{1, HashOf(9)}};
  EXPECT_FALSE(tier.Store(overwrite, [](std::span<std::byte* const>) { return absl::InternalError("copy failed"); }).ok());
  EXPECT_EQ(tier.Contents().size(), 1u);
  // The same layout keeps the blocks (a model reload); another drops them.
  tier.Reset(layout, {0, 2}, 2, 4);
  EXPECT_EQ(tier.Contents().size(), 1u);
  tier.Reset(layout, {0, 2}, 2, 8);
  EXPECT_TRUE(tier.Contents().empty());
}

// ---- the step executor

class StepExecutorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = models::Model::Load(testing::GoldenModelDir("llama"));
    ASSERT_TRUE(model.ok()) << model.status();
    reference_ = std::move(*model);
    auto engine_model = models::Model::Load(testing::GoldenModelDir("llama"));
    ASSERT_TRUE(engine_model.ok());
    executor_ = std::make_unique<StepExecutor>(MakeCpuEngine(std::move(*engine_model), reference_->KvLayoutFor(kBlockSize, KvDtype::kF32), 16), &host_,
                                               &fetched_);
    const int kv_heads = reference_->spec().num_kv_heads;
    host_.Reset(reference_->KvLayoutFor(kBlockSize, KvDtype::kF32), {0, kv_heads}, kv_heads, /*num_blocks=*/8);
  }

  v1::internal::NewSequence* AddNew(v1::internal::StepRequest* step, uint64_t id, std::span<const int32_t> tokens,
                                    std::vector<int32_t> blocks) {
    auto* s = step->add_new_sequences();
    s->set_seq_id(id);
    s->mutable_tokens()->Add(tokens.begin(), tokens.end());
    s->mutable_block_table()->Add(blocks.begin(), blocks.end());
    s->mutable_sampling()->set_temperature(0.0f);  // greedy; the rest as the frontend resolves them
    s->mutable_sampling()->set_top_p(1.0f);
    s->mutable_sampling()->set_repetition_penalty(1.0f);
    s->set_prompt_len(static_cast<int32_t>(tokens.size()));
    s->set_sample(true);
    return s;
  }

  std::unique_ptr<models::Model> reference_;
  kvstore::HostTier host_;
  std::atomic<int64_t> fetched_{0};
  std::unique_ptr<StepExecutor> executor_;
};

TEST_F(StepExecutorTest, DecodesGreedilyLikeTheModel) {
  std::vector<int32_t> prompt(20);
  for (int i = 0; i < 20; ++i) prompt[i] = (i * 7 + 3) % 320;
  const std::vector<int32_t> want = testing::Reference(*reference_, prompt, 4);
  v1::internal::StepRequest step;
  AddNew(&step, 1, prompt, {0, 1});
  std::vector<int32_t> got;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::internal::StepResponse> r = executor_->Run(step);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_EQ(r->sampled_size(), 1);
    got.push_back(r->sampled(0).token_id());
    step.Clear();
    auto* c = step.add_continued();
    c->set_seq_id(1);
    c->add_tokens(got.back());
    c->set_sample(true);
  }
  EXPECT_EQ(got, want);
}

TEST_F(StepExecutorTest, APrefixBackFromTheHostTierServesLikeAComputedOne) {
  std::vector<int32_t> prompt(20);
  for (int i = 0; i < 20; ++i) prompt[i] = (i * 5 + 1) % 320;
  const std::vector<int32_t> want = testing::Reference(*reference_, prompt, 1);
  v1::internal::StepRequest step;
  AddNew(&step, 1, prompt, {0, 1});
  ASSERT_TRUE(executor_->Run(step).ok());
  // Block 0 (the first 16 tokens) goes down to host block 2, and comes back up into
  // device block 5, which a new sequence then uses as its cached prefix.
  step.Clear();
  step.add_finished(1);
  auto* out = step.add_swap_out();
  out->set_from(0);
  out->set_to(2);
  const kvstore::BlockHash hash = HashOf(42);
  out->set_hash(hash.data(), hash.size());
  ASSERT_TRUE(executor_->Run(step).ok());
  step.Clear();
  auto* in = step.add_swap_in();
  in->set_from(2);
  in->set_to(5);
  auto* s = AddNew(&step, 2, std::span<const int32_t>(prompt).subspan(kBlockSize), {5, 6});
  s->set_prompt_len(static_cast<int32_t>(prompt.size()));
  s->set_context_len(kBlockSize);
  s->mutable_prefix_tokens()->Add(prompt.begin(), prompt.begin() + kBlockSize);
  absl::StatusOr<v1::internal::StepResponse> r = executor_->Run(step);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->sampled_size(), 1);
  EXPECT_EQ(r->sampled(0).token_id(), want[0]);
}

TEST_F(StepExecutorTest, BadDiffsAreRefusedBeforeAnythingChanges) {
  const int32_t prompt[] = {1, 2, 3};
  v1::internal::StepRequest step;
  AddNew(&step, 1, prompt, {0});
  step.add_continued()->set_seq_id(99);  // never sent
  EXPECT_EQ(executor_->Run(step).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(executor_->num_sequences(), 0u);
  step.Clear();
  AddNew(&step, 1, prompt, {0});
  auto* copy = step.add_swap_in();
  copy->set_from(0);
  copy->set_to(16);  // past the device pool
  EXPECT_EQ(executor_->Run(step).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(executor_->num_sequences(), 0u);
}

// ---- the coordinator session, against a scripted coordinator

class ScriptedCoordinator final : public v1::internal::Coordinator::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const v1::internal::RegisterRequest* request,
                        v1::internal::RegisterResponse* response) override {
    if (refuse) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "bad shape");
    response->set_worker_id("worker-" + std::to_string(++registrations));
    response->set_heartbeat_interval_ms(50);
    address = request->address();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::internal::HeartbeatRequest* request,
                         v1::internal::HeartbeatResponse* response) override {
    ++heartbeats;
    // The first heartbeat finds the coordinator restarted (the worker is unknown).
    response->set_known(heartbeats > 1);
    saw_draining = saw_draining || request->draining();
    response->set_release(request->draining());
    return grpc::Status::OK;
  }
  std::atomic<bool> refuse{false}, saw_draining{false};
  std::atomic<int> registrations{0}, heartbeats{0};
  std::string address;
};

struct Scripted {
  Scripted() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&coordinator);
    server = builder.BuildAndStart();
    stub = v1::internal::Coordinator::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials()));
  }
  ~Scripted() { server->Shutdown(); }
  ScriptedCoordinator coordinator;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::internal::Coordinator::Stub> stub;
};

SessionOptions Options() {
  SessionOptions o;
  o.address = "127.0.0.1:7";
  o.retry_interval = std::chrono::milliseconds(20);
  o.orphan_drain_exit = std::chrono::milliseconds(300);
  return o;
}

TEST(CoordinatorSessionTest, ARefusedWorkerStopsTrying) {
  Scripted c;
  c.coordinator.refuse = true;
  WorkerService service({});
  CoordinatorSession session(c.stub.get(), &service, nullptr, Options());
  std::atomic<bool> draining{false};
  const absl::Status s = session.Run(draining);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("bad shape"), std::string::npos) << s;
}

TEST(CoordinatorSessionTest, RegistersAgainAfterARestartAndLeavesWhenReleased) {
  Scripted c;
  WorkerService service({});
  CoordinatorSession session(c.stub.get(), &service, nullptr, Options());
  std::atomic<bool> draining{false};
  std::thread drain([&] {
    while (c.coordinator.registrations < 2) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    draining = true;
  });
  const absl::Status s = session.Run(draining);
  drain.join();
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.coordinator.registrations, 2);  // once, and again for the restarted coordinator
  EXPECT_TRUE(c.coordinator.saw_draining);
  EXPECT_EQ(c.coordinator.address, "127.0.0.1:7");
  EXPECT_EQ(session.worker_id(), "worker-2");
}

TEST(CoordinatorSessionTest, ADrainingWorkerWithoutACoordinatorExits) {
  // A port nothing listens on: the coordinator is gone.
  auto stub = v1::internal::Coordinator::NewStub(grpc::CreateChannel("127.0.0.1:1", grpc::InsecureChannelCredentials()));
  WorkerService service({});
  SessionOptions options = Options();
  options.call_timeout = std::chrono::milliseconds(100);
  CoordinatorSession session(stub.get(), &service, nullptr, options);
  std::atomic<bool> draining{true};
  EXPECT_TRUE(session.Run(draining).ok());
}

// --model-root: folders inside it load, anything else (a sibling, "..", a symbolic
// link out) is refused before a byte is read, and the refusal reaches the caller.
TEST(ModelRootTest, OnlyFoldersInsideTheRootLoad) {
  namespace fs = std::filesystem;
  const std::string base = testing::MakeTempDir("model_root");
  fs::create_directories(base + "/models/tiny");
  fs::create_directories(base + "/modelsX/other");
  fs::create_directory_symlink(base + "/modelsX/other", base + "/models/escape");
  EXPECT_TRUE(CheckModelRoot("", "/anything").ok());
  EXPECT_TRUE(CheckModelRoot(base + "/models", base + "/models/tiny").ok());
  EXPECT_TRUE(CheckModelRoot(base + "/models/", base + "/models/tiny").ok());
  for (const std::string& outside : {base + "/modelsX/other", base + "/models/../modelsX/other",
                                     base + "/models/escape", std::string("/etc")}) {
    const absl::Status s = CheckModelRoot(base + "/models", outside);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied) << outside;
    EXPECT_NE(s.message().find("--model-root"), std::string_view::npos) << s;
  }

  WorkerOptions options;
  options.model_root = base + "/models";
  WorkerService service(options);
  v1::internal::LoadModelRequest request;
  request.set_model_dir(testing::GoldenModelDir("llama"));
  request.set_block_size(16);
  v1::internal::LoadModelResponse response;
  EXPECT_EQ(service.LoadModel(nullptr, &request, &response).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(service.fatal_error().has_value()) << "the worker stops instead of registering again";
  fs::remove_all(base);
}

}  // namespace
}  // namespace tessera::worker
