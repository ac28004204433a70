// The golden models on the GPU: Model on the CUDA backend against HuggingFace transformers' logits and
// greedy continuations (the CPU model's golden test, tests/golden_test.cc, on the
// device), prompts one at a time and the batch case as one flattened batch. Skips,
// with a message, where no GPU is present.
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "common/status.h"
#include "kernels/cuda/device.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cuda_kv_pool.h"
#include "models/model.h"
#include "models/generate.h"
#include "parallel/nccl_communicator.h"
#include "parallel/replica.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"
#include "tests/serving_client.h"

namespace tessera {
namespace {

using testing::Golden;
using testing::MaxAbsDiff;

constexpr float kLogitTolerance = 1e-3f;  // float32 checkpoints: fp32 GEMMs throughout
constexpr int kBlockSize = 16;
// bf16 checkpoints: cuBLAS rounds the activations to bf16 where transformers' reference
// did not, so a greedy step whose two candidates' reference logits lie this close may
// pick the other one (seen on an H200: llama_bf16's batch row 0, step 13, a 0.0068 gap).
constexpr float kBf16TieGap = 0.02f;

// Greedy tokens equal transformers' up to the first step that picks differently; for a
// bf16 checkpoint that step must be a near tie in the reference logits, and the
// continuations part there, so the steps after it are not compared.
void ExpectGreedyTokens(const std::vector<int32_t>& got, const std::vector<int32_t>& want, bool bf16,
                        const std::function<const float*(size_t step)>& reference_logits, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t step = 0; step < want.size(); ++step) {
    if (got[step] == want[step]) continue;
    const float gap = reference_logits(step)[want[step]] - reference_logits(step)[got[step]];
    EXPECT_TRUE(bf16 && gap < kBf16TieGap) << what << ": step " << step << " picked " << got[step]
                                           << ", transformers " << want[step] << " (reference logit gap " << gap
                                           << ")";
    return;
  }
}

class CudaModelTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
    golden_ = testing::LoadGolden(GetParam());
    models::ModelOptions options;
    options.cuda_device = 0;
    auto model = models::Model::Load(testing::GoldenModelDir(GetParam()), options);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
    auto kv = kvstore::CudaKvPool::Create(model_->KvLayoutFor(kBlockSize, KvDtype::kF32), 256);
    ASSERT_TRUE(kv.ok()) << kv.status();
    kv_ = std::move(*kv);
  }
  Golden golden_;
  std::unique_ptr<models::Model> model_;
  std::unique_ptr<kvstore::CudaKvPool> kv_;
};

// Prefills the prompt (every position's logits), then decodes greedily one token a
// step: `steps` tokens, with the logits each was chosen from.
struct Run {
  std::vector<int32_t> tokens;
  std::vector<float> prompt_logits, step_logits;
};

absl::StatusOr<Run> Greedy(models::Model& model, kvstore::CudaKvPool& kv, const std::vector<int32_t>& prompt,
                           int steps) {
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  Run run;
  std::vector<int32_t> input = prompt;
  int64_t context = 0;
  std::vector<float> logits;
  const int vocab = model.spec().vocab_size;
  for (int step = 0; step < steps; ++step) {
    RETURN_IF_ERROR(table.EnsureCapacity(context + static_cast<int64_t>(input.size()), kBlockSize, allocator));
    const models::SequenceInput seq{input, context, table.blocks(), /*all_logits=*/step == 0};
    RETURN_IF_ERROR(model.Forward({&seq, 1}, kv, &logits));
    if (step == 0) run.prompt_logits = logits;
    const float* last = logits.data() + logits.size() - vocab;
    run.step_logits.insert(run.step_logits.end(), last, last + vocab);
    run.tokens.push_back(models::ArgMax(last, vocab));
    context += static_cast<int64_t>(input.size());
    input = {run.tokens.back()};
  }
  return run;
}

TEST_P(CudaModelTest, PromptLogitsAndGreedyDecodingMatchTransformers) {
  for (const auto& c : golden_.cases) {
    auto run = Greedy(*model_, *kv_, c.input_ids, static_cast<int>(c.new_tokens.size()));
    ASSERT_TRUE(run.ok()) << run.status();
    const auto reference = [&](size_t step) { return c.step_logits.data() + step * golden_.vocab; };
    ExpectGreedyTokens(run->tokens, c.new_tokens, golden_.bf16, reference, c.name);
    ASSERT_EQ(run->prompt_logits.size(), c.logits.size());
    if (golden_.bf16) continue;  // bf16: tokens only, as on the CPU
    EXPECT_LE(MaxAbsDiff(run->prompt_logits.data(), c.logits.data(), c.logits.size()), kLogitTolerance) << c.name;
    ASSERT_EQ(run->step_logits.size(), c.step_logits.size());
    EXPECT_LE(MaxAbsDiff(run->step_logits.data(), c.step_logits.data(), c.step_logits.size()), kLogitTolerance)
        << c.name;
  }
}

// The batch case's rows prefilled together in one step, then decoded together.
TEST_P(CudaModelTest, FlattenedBatchMatchesTransformers) {
  if (!golden_.has_batch) GTEST_SKIP() << "no batch case (dynamic RoPE depends on the call)";
  const auto& batch = golden_.batch;
  const size_t rows = batch.rows.size();
  const int steps = static_cast<int>(batch.new_tokens[0].size()), vocab = golden_.vocab;
  kvstore::BlockAllocator allocator(kv_->num_blocks());
  std::vector<kvstore::BlockTable> tables(rows);
  std::vector<int64_t> context(rows, 0);
  std::vector<std::vector<int32_t>> inputs = batch.rows, generated(rows);
  std::vector<float> logits;
  for (int step = 0; step < steps; ++step) {
    std::vector<models::SequenceInput> seqs;
    for (size_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(tables[r].EnsureCapacity(context[r] + inputs[r].size(), kBlockSize, allocator).ok());
      seqs.push_back({inputs[r], context[r], tables[r].blocks(), false});
    }
    ASSERT_TRUE(model_->Forward(seqs, *kv_, &logits).ok());
    for (size_t r = 0; r < rows; ++r) {
      const float* got = logits.data() + r * vocab;
      const float* want = batch.step_logits.data() + (static_cast<size_t>(step) * rows + r) * vocab;
      if (!golden_.bf16) {
        EXPECT_LE(MaxAbsDiff(got, want, vocab), kLogitTolerance) << "row " << r << " step " << step;
      }
      context[r] += static_cast<int64_t>(inputs[r].size());
      inputs[r] = {models::ArgMax(got, vocab)};
      generated[r].push_back(inputs[r][0]);
    }
  }
  for (size_t r = 0; r < rows; ++r) {
    const auto reference = [&](size_t step) { return batch.step_logits.data() + (step * rows + r) * vocab; };
    ExpectGreedyTokens(generated[r], batch.new_tokens[r], golden_.bf16, reference, "row " + std::to_string(r));
  }
}

// Bad input gets the CPU model's errors, before anything runs.
TEST_P(CudaModelTest, BadStepsAreRefused) {
  const std::vector<int32_t> bad = {golden_.vocab};
  const std::vector<int32_t> table = {0};
  const models::SequenceInput seq{bad, 0, table, false};
  std::vector<float> logits;
  EXPECT_EQ(model_->Forward({&seq, 1}, *kv_, &logits).code(), absl::StatusCode::kInvalidArgument);
}

// Tensor parallelism (and, for Mixtral, expert parallelism) on GPUs: every rank a
// thread with its own GPU Model, logits equal to one rank's and the same greedy tokens.
// Over Gloo the ranks share device 0 (the staged path); over NCCL each needs its own
// GPU, so that case runs only on machines with enough of them.
struct Sharding {
  int tp = 1, ep = 1;
};

void ExpectShardedMatchesOneRank(const std::string& name, const Run& reference, const std::vector<int32_t>& prompt,
                                 int steps, Sharding sharding, bool nccl) {
  const int size = sharding.tp * sharding.ep;
  const std::string dir = testing::MakeTempDir("cuda_tp");
  parallel::FileRendezvousStore store(dir);
  std::vector<absl::StatusOr<Run>> runs(size, absl::UnknownError("not run"));
  std::vector<std::thread> ranks;
  for (int rank = 0; rank < size; ++rank) {
    ranks.emplace_back([&, rank] {
      const int device = nccl ? rank : 0;
      auto connect = [&](int r, int n, const std::string& prefix) -> absl::StatusOr<std::unique_ptr<parallel::Communicator>> {
        if (nccl) return parallel::CreateNcclCommunicator(r, n, store, {device, std::chrono::seconds(60), prefix});
        parallel::GlooOptions gloo;
        gloo.prefix = prefix;
        return parallel::CreateGlooCommunicator(r, n, store, gloo);
      };
      models::ModelOptions options;
      options.tp = {rank % sharding.tp, sharding.tp};
      options.ep = {rank / sharding.tp, sharding.ep};
      auto comms = parallel::ConnectReplica({options.tp.rank, sharding.tp, options.ep.rank, sharding.ep}, "", connect);
      if (!comms.ok()) return void(runs[rank] = comms.status());
      options.communicator = comms->tp.get();
      options.moe_communicator = comms->all.get();
      options.cuda_device = device;
      auto model = models::Model::Load(testing::GoldenModelDir(name), options);
      if (!model.ok()) return void(runs[rank] = model.status());
      auto kv = kvstore::CudaKvPool::Create((*model)->KvLayoutFor(kBlockSize, KvDtype::kF32), 64);
      if (!kv.ok()) return void(runs[rank] = kv.status());
      runs[rank] = Greedy(**model, **kv, prompt, steps);
    });
  }
  for (std::thread& t : ranks) t.join();
  std::filesystem::remove_all(dir);
  for (int rank = 0; rank < size; ++rank) {
    ASSERT_TRUE(runs[rank].ok()) << "rank " << rank << ": " << runs[rank].status();
    EXPECT_EQ(runs[rank]->tokens, reference.tokens) << "rank " << rank;
    EXPECT_LE(MaxAbsDiff(runs[rank]->prompt_logits.data(), reference.prompt_logits.data(),
                         reference.prompt_logits.size()),
              1e-4f)
        << "rank " << rank;
  }
}

TEST_P(CudaModelTest, ShardedRanksMatchOneRank) {
  const std::vector<int32_t>& prompt = golden_.cases[1].input_ids;
  auto reference = Greedy(*model_, *kv_, prompt, 8);
  ASSERT_TRUE(reference.ok()) << reference.status();
  std::vector<Sharding> shardings;
  if (models::ShardLayout::For(model_->spec(), {0, 2}).ok()) shardings.push_back({2, 1});
  if (model_->spec().is_moe()) shardings.push_back({1, 2});
  if (shardings.empty()) GTEST_SKIP() << "the fixture's heads do not split over 2 ranks";
  for (Sharding sharding : shardings) {
    SCOPED_TRACE("tp " + std::to_string(sharding.tp) + " ep " + std::to_string(sharding.ep));
    ExpectShardedMatchesOneRank(GetParam(), *reference, prompt, 8, sharding, /*nccl=*/false);
    if (kernels::cuda::DeviceCount() >= 2) {
      ExpectShardedMatchesOneRank(GetParam(), *reference, prompt, 8, sharding, /*nccl=*/true);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, CudaModelTest, ::testing::ValuesIn(testing::GoldenModels()));

// A worker on the GPU (--device cuda:0) serves through the coordinator exactly what the
// CPU model computes, prefix cache and host tier included.
TEST(CudaWorkerTest, ServesExactlyWithThePrefixCache) {
  if (kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  testing::LocalCluster cluster(
      {testing::GoldenModelDir("llama"), 1, {"--host-kv-blocks", "32"}, {"--device", "cuda:0"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  ASSERT_TRUE(model.ok());
  std::vector<int32_t> prompt(40);
  for (int i = 0; i < 40; ++i) prompt[i] = (i * 13 + 5) % 320;
  for (int round = 0; round < 2; ++round) {  // the second finds the prefix cached
    const testing::Outcome o = testing::Generate(*cluster.Stub(), testing::GreedyIds(prompt, 16));
    ASSERT_TRUE(o.status.ok()) << o.status.error_message();
    EXPECT_EQ(o.tokens, testing::Reference(**model, prompt, 16)) << "round " << round;
    if (round == 1) {
      EXPECT_EQ(o.usage.cached_tokens(), 32);
    }
  }
}

// A GPU worker samples on the device: a seeded request repeats exactly and depends on
// its seed; a request asking for log-probabilities (sampled on the host) is served
// while it shares steps with device-sampled ones. (Device and host samplers agree
// token for token on the same logits: cuda_kernels_test.)
TEST(CudaWorkerTest, SamplesOnTheDevice) {
  if (kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  testing::LocalCluster cluster({testing::GoldenModelDir("llama"), 1, {}, {"--device", "cuda:0"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  std::vector<int32_t> prompt(12);
  for (int i = 0; i < 12; ++i) prompt[i] = (i * 11 + 2) % 320;
  v1::GenerateRequest sampled = testing::GreedyIds(prompt, 24);
  auto* s = sampled.mutable_sampling();
  s->set_temperature(0.9f);
  s->set_top_p(0.95f);
  s->set_top_k(50);
  s->set_repetition_penalty(1.2f);
  s->set_frequency_penalty(0.3f);
  s->set_seed(1234);
  v1::GenerateRequest with_logprobs = sampled;
  with_logprobs.mutable_sampling()->set_logprobs(true);
  with_logprobs.mutable_sampling()->set_top_logprobs(3);
  auto stub = cluster.Stub();
  testing::Outcome a, b, c;
  std::thread other([&] { c = testing::Generate(*stub, with_logprobs); });  // shares steps with a
  a = testing::Generate(*stub, sampled);
  other.join();
  b = testing::Generate(*stub, sampled);
  ASSERT_TRUE(a.status.ok() && b.status.ok() && c.status.ok()) << a.status.error_message();
  EXPECT_EQ(a.tokens.size(), 24u);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(c.tokens.size(), 24u);
  s->set_seed(99);
  EXPECT_NE(testing::Generate(*stub, sampled).tokens, a.tokens);
}

// A tensor-parallel group of two GPU workers (sharing device 0 over Gloo, as a one-GPU
// machine can) serves what one CPU rank computes.
TEST(CudaWorkerTest, TensorParallelGroupServesExactly) {
  if (kernels::cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: GPU tests skipped";
  testing::LocalCluster cluster({testing::GoldenModelDir("llama"), 2, {"--tp", "2"},
                                 {"--device", "cuda:0", "--gpu-collectives", "gloo"}});
  ASSERT_TRUE(cluster.WaitForReadyGroups(1));
  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  ASSERT_TRUE(model.ok());
  std::vector<int32_t> prompt(24);
  for (int i = 0; i < 24; ++i) prompt[i] = (i * 7 + 3) % 320;
  const testing::Outcome o = testing::Generate(*cluster.Stub(), testing::GreedyIds(prompt, 12));
  ASSERT_TRUE(o.status.ok()) << o.status.error_message();
  EXPECT_EQ(o.tokens, testing::Reference(**model, prompt, 12));
}

}  // namespace
}  // namespace tessera
