// The engine against HuggingFace transformers: every golden fixture, every prompt,
// full-sequence logits, greedy continuations with the KV cache, and the batch case run
// as one flattened batch; at KV block sizes 1, 16 and 32, at every CPU kernel level
// (kernels/cpu_isa.h) this CPU runs (block size 16; the others are skipped and say so),
// and with a bf16 KV cache (block size 16): the same tokens, logits to bf16's precision.
#include <gtest/gtest.h>

#include "kernels/cpu_isa.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cpu_kv_storage.h"
#include "models/generate.h"
#include "models/model.h"
#include "models/safetensors.h"
#include "tests/golden_fixture.h"

namespace tessera {
namespace {

using testing::Golden;
using testing::MaxAbsDiff;

constexpr float kLogitTolerance = 1e-3f;  // the bound; the fixtures' hint is 1e-4
// A bf16 cache rounds every K and V to 8 significant bits (relative error up to 2^-9):
// on these fixtures the logits then move by up to 0.018 (measured), the tokens not at all.
constexpr float kBf16KvLogitTolerance = 3e-2f;

struct Param {
  std::string model;
  int block_size;
  kernels::CpuIsa isa = kernels::BestCpuIsa();
  KvDtype kv_dtype = KvDtype::kF32;
};

void PrintTo(const Param& p, std::ostream* os) {
  *os << p.model << " block " << p.block_size << " " << kernels::CpuIsaName(p.isa) << " kv " << KvDtypeName(p.kv_dtype);
}

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  std::string isa = kernels::CpuIsaName(info.param.isa);
  for (char& c : isa) c = c == '-' ? '_' : c;
  return info.param.model + "_block" + std::to_string(info.param.block_size) + "_" + isa + "_kv_" +
         KvDtypeName(info.param.kv_dtype);
}

std::vector<Param> AllParams() {
  std::vector<Param> params;
  for (const std::string& m : testing::GoldenModels()) {
    for (int bs : {1, 16, 32}) params.push_back({m, bs});
    params.push_back({m, 16, kernels::BestCpuIsa(), KvDtype::kBf16});
    for (kernels::CpuIsa isa : kernels::AllCpuIsas()) {
      if (isa != kernels::BestCpuIsa()) params.push_back({m, 16, isa});
    }
  }
  return params;
}

class GoldenTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (absl::Status isa = kernels::SelectCpuIsa(GetParam().isa); !isa.ok()) GTEST_SKIP() << "skipped: " << isa;
    golden_ = testing::LoadGolden(GetParam().model);
    auto model = models::Model::Load(testing::GoldenModelDir(GetParam().model));
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = std::move(*model);
  }
  void TearDown() override { (void)kernels::SelectCpuIsa(kernels::BestCpuIsa()); }
  float tolerance() const { return GetParam().kv_dtype == KvDtype::kF32 ? kLogitTolerance : kBf16KvLogitTolerance; }
  Golden golden_;
  std::unique_ptr<models::Model> model_;
};

TEST_P(GoldenTest, PromptLogitsMatchTransformers) {
  for (const auto& c : golden_.cases) {
    auto logits = models::PromptLogits(*model_, c.input_ids, GetParam().block_size, GetParam().kv_dtype);
    ASSERT_TRUE(logits.ok()) << logits.status();
    ASSERT_EQ(logits->size(), c.logits.size());
    if (golden_.bf16) continue;  // bf16: tokens only (below)
    EXPECT_LE(MaxAbsDiff(logits->data(), c.logits.data(), c.logits.size()), tolerance()) << c.name;
  }
}

TEST_P(GoldenTest, GreedyDecodingMatchesTransformers) {
  for (const auto& c : golden_.cases) {
    std::vector<float> steps;
    models::GreedyOptions options;
    options.max_new_tokens = static_cast<int>(c.new_tokens.size());
    options.block_size = GetParam().block_size;
    options.kv_dtype = GetParam().kv_dtype;
    options.step_logits = &steps;
    auto tokens = models::GenerateGreedy(*model_, c.input_ids, options);
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    EXPECT_EQ(*tokens, c.new_tokens) << c.name;
    ASSERT_EQ(steps.size(), c.step_logits.size());
    if (!golden_.bf16) {
      EXPECT_LE(MaxAbsDiff(steps.data(), c.step_logits.data(), steps.size()), tolerance()) << c.name;
    }
  }
}

// An embedding pools the final hidden states the LM head reads: the last position's
// state times the LM head's weight is that position's logits, and a mean pooled over
// two chunks is the mean of every prefix's last state.
TEST_P(GoldenTest, PooledStatesAreTheStatesTheLmHeadReads) {
  // Chunks and prefixes legitimately differ from a whole prompt there (MixedParams).
  if (GetParam().model == "llama_rope_dynamic" || golden_.bf16) GTEST_SKIP() << "not batch-invariant";
  const std::vector<int32_t>& ids = golden_.cases.back().input_ids;
  const int64_t n = static_cast<int64_t>(ids.size()), hidden = model_->spec().hidden_size;
  const int bs = GetParam().block_size;
  // The raw pooled state of `tokens` computed in two chunks split at `split`.
  auto pooled = [&](std::span<const int32_t> tokens, models::Pooling pooling, size_t split) {
    kvstore::CpuKvStorage kv(model_->KvLayoutFor(bs, GetParam().kv_dtype), 256);
    kvstore::BlockAllocator allocator(kv.num_blocks());
    kvstore::BlockTable table;
    EXPECT_TRUE(table.EnsureCapacity(static_cast<int64_t>(tokens.size()), bs, allocator).ok());
    std::vector<float> state(hidden, 0.0f), logits, out;
    for (auto [begin, end] : {std::pair<size_t, size_t>{0, split}, {split, tokens.size()}}) {
      if (begin == end) continue;
      models::SequenceInput seq{tokens.subspan(begin, end - begin), static_cast<int64_t>(begin), table.blocks()};
      seq.pooling = pooling;
      EXPECT_TRUE(model_->Forward({&seq, 1}, kv, &logits, &out).ok());
      EXPECT_TRUE(logits.empty());
      for (int64_t j = 0; j < hidden; ++j) state[j] = pooling == models::Pooling::kMean ? state[j] + out[j] : out[j];
    }
    return state;
  };

  auto checkpoint = models::Checkpoint::Open(testing::GoldenModelDir(GetParam().model));
  ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
  const models::TensorView* head = nullptr;
  std::string head_name;
  for (const char* name : {"lm_head.weight", "model.embed_tokens.weight", "transformer.wte.weight", "wte.weight"}) {
    if ((head = (*checkpoint)->Find(name)) != nullptr) {
      head_name = name;
      break;
    }
  }
  ASSERT_NE(head, nullptr);
  std::vector<float> w(head->numel());
  ASSERT_TRUE(models::ReadAsFloat(head_name, *head, w.data()).ok());
  const std::vector<float> last = pooled(ids, models::Pooling::kLast, ids.size() / 2);
  const std::vector<float> logits = *models::PromptLogits(*model_, ids, bs, GetParam().kv_dtype);
  std::vector<float> projected(golden_.vocab);
  for (int v = 0; v < golden_.vocab; ++v) {
    double dot = 0;
    for (int64_t j = 0; j < hidden; ++j) dot += static_cast<double>(w[v * hidden + j]) * last[j];
    projected[v] = static_cast<float>(dot);
  }
  EXPECT_LE(MaxAbsDiff(projected.data(), logits.data() + (n - 1) * golden_.vocab, golden_.vocab), kLogitTolerance);

  const std::vector<float> mean = pooled(ids, models::Pooling::kMean, ids.size() / 2);
  std::vector<float> prefixes(hidden, 0.0f);
  for (int64_t i = 1; i <= n; ++i) {
    const std::vector<float> s = pooled(std::span(ids).first(i), models::Pooling::kLast, i);
    for (int64_t j = 0; j < hidden; ++j) prefixes[j] += s[j];
  }
  EXPECT_LE(MaxAbsDiff(mean.data(), prefixes.data(), hidden), 1e-4f * n);

  // The embedding: that mean, of unit length.
  const std::vector<float> embedding = *models::Embed(*model_, ids, models::Pooling::kMean, bs, GetParam().kv_dtype);
  double norm = 0;
  for (float v : mean) norm += static_cast<double>(v) * v;
  std::vector<float> unit(hidden);
  for (int64_t j = 0; j < hidden; ++j) unit[j] = static_cast<float>(mean[j] / std::sqrt(norm));
  EXPECT_LE(MaxAbsDiff(embedding.data(), unit.data(), hidden), 1e-5f);
}

// The batch case's rows (different lengths) prefilled together in one step, then
// decoded together, one token per row per step.
TEST_P(GoldenTest, FlattenedBatchMatchesTransformers) {
  if (!golden_.has_batch) GTEST_SKIP() << "no batch case (dynamic RoPE depends on the call)";
  if (model_->spec().is_moe() && GetParam().kv_dtype != KvDtype::kF32) {
    // Measured: mixtral's row 0 stays within 0.03 of transformers for 13 steps, then
    // jumps by 1.0 at step 14, teacher-forced: a jump, not a drift, as when a router's
    // top-2 choice flips. Its prompts and greedy cases above pass with a bf16 cache.
    GTEST_SKIP() << "MoE routing is discontinuous under the bf16 cache's rounding";
  }
  const auto& batch = golden_.batch;
  const int bs = GetParam().block_size;
  const size_t rows = batch.rows.size();
  const int steps = static_cast<int>(batch.new_tokens[0].size());
  kvstore::CpuKvStorage kv(model_->KvLayoutFor(bs, GetParam().kv_dtype), 64 * 4);
  kvstore::BlockAllocator allocator(kv.num_blocks());
  std::vector<kvstore::BlockTable> tables(rows);
  std::vector<int64_t> context(rows, 0);
  std::vector<std::vector<int32_t>> inputs = batch.rows;
  std::vector<float> logits;
  const int vocab = golden_.vocab;
  for (int step = 0; step < steps; ++step) {
    std::vector<models::SequenceInput> seqs;
    for (size_t r = 0; r < rows; ++r) {
      ASSERT_TRUE(tables[r].EnsureCapacity(context[r] + inputs[r].size(), bs, allocator).ok());
      seqs.push_back({inputs[r], context[r], tables[r].blocks(), false});
    }
    ASSERT_TRUE(model_->Forward(seqs, kv, &logits).ok());
    for (size_t r = 0; r < rows; ++r) {
      const float* got = logits.data() + r * vocab;
      const float* want = batch.step_logits.data() + (static_cast<size_t>(step) * rows + r) * vocab;
      if (!golden_.bf16) {
        EXPECT_LE(MaxAbsDiff(got, want, vocab), tolerance()) << "row " << r << " step " << step;
      }
      context[r] += static_cast<int64_t>(inputs[r].size());
      // The same token as transformers; a bf16 cache may flip a near-tie of the
      // reference (its two logits closer than twice the tolerance). The reference's
      // token goes on either way, so later steps stay comparable.
      const int32_t next = models::ArgMax(got, vocab), reference = batch.new_tokens[r][step];
      if (next != reference) {
        const float tie = GetParam().kv_dtype == KvDtype::kF32 ? 0.0f : 2 * tolerance();
        EXPECT_LT(want[reference] - want[next], tie) << "row " << r << " step " << step << ": " << next << " instead of "
                                                     << reference;
      }
      inputs[r] = {reference};
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllFixtures, GoldenTest, ::testing::ValuesIn(AllParams()), ParamName);

// Sequences in one flattened batch (prefill chunks, whole prefills and decode steps
// mixed) give the logits each gives alone.
class MixedBatchTest : public ::testing::TestWithParam<Param> {};

TEST_P(MixedBatchTest, MixedStepsMatchEachSequenceAlone) {
  const Golden golden = testing::LoadGolden(GetParam().model);
  auto loaded = models::Model::Load(testing::GoldenModelDir(GetParam().model));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  models::Model& model = **loaded;
  const int bs = GetParam().block_size;
  const int vocab = golden.vocab;
  // a: the longest prompt, prefilled in two chunks; b: prefilled, then decodes;
  // c: arrives in the second step.
  const std::vector<int32_t>& a = golden.cases[2].input_ids;
  const std::vector<int32_t>& b = golden.cases[1].input_ids;
  const std::vector<int32_t>& c = golden.cases[0].input_ids;
  const int32_t b_next = golden.cases[1].new_tokens[0];
  std::vector<int32_t> b_extended = b;
  b_extended.push_back(b_next);

  kvstore::CpuKvStorage kv(model.KvLayoutFor(bs, GetParam().kv_dtype), 256);
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable ta, tb, tc;
  ASSERT_TRUE(ta.EnsureCapacity(a.size(), bs, allocator).ok());
  ASSERT_TRUE(tb.EnsureCapacity(b.size() + 1, bs, allocator).ok());
  ASSERT_TRUE(tc.EnsureCapacity(c.size(), bs, allocator).ok());
  const size_t split = a.size() / 2 + 3;
  std::span<const int32_t> a_all(a);

  std::vector<float> step1, step2;
  std::vector<models::SequenceInput> first = {{a_all.first(split), 0, ta.blocks(), true},
                                              {b, 0, tb.blocks(), true}};
  ASSERT_TRUE(model.Forward(first, kv, &step1).ok());
  std::vector<models::SequenceInput> second = {
      {a_all.subspan(split), static_cast<int64_t>(split), ta.blocks(), true},
      {std::span<const int32_t>(&b_next, 1), static_cast<int64_t>(b.size()), tb.blocks(), false},
      {c, 0, tc.blocks(), true}};
  ASSERT_TRUE(model.Forward(second, kv, &step2).ok());

  auto alone = [&](const std::vector<int32_t>& ids) {
    return *models::PromptLogits(model, ids, bs, GetParam().kv_dtype);
  };
  const std::vector<float> ref_a = alone(a), ref_b = alone(b), ref_b2 = alone(b_extended), ref_c = alone(c);
  constexpr float kSame = 1e-4f;
  // step1 rows: a[0:split], b[all]; step2 rows: a[split:], b's decode, c[all].
  EXPECT_LE(MaxAbsDiff(step1.data(), ref_a.data(), split * vocab), kSame);
  EXPECT_LE(MaxAbsDiff(step1.data() + split * vocab, ref_b.data(), b.size() * vocab), kSame);
  const size_t rest = a.size() - split;
  EXPECT_LE(MaxAbsDiff(step2.data(), ref_a.data() + split * vocab, rest * vocab), kSame);
  EXPECT_LE(MaxAbsDiff(step2.data() + rest * vocab, ref_b2.data() + b.size() * vocab, vocab), kSame);
  EXPECT_LE(MaxAbsDiff(step2.data() + (rest + 1) * vocab, ref_c.data(), c.size() * vocab), kSame);
}

std::vector<Param> MixedParams() {
  std::vector<Param> params;
  // Dynamic NTK RoPE depends on each call's length by definition, so a chunked prefill
  // legitimately differs from a whole one; bf16 weights switch matmul paths with the
  // batch size. Every other fixture must be batch-invariant.
  for (const std::string& m : testing::GoldenModels()) {
    if (m == "llama_rope_dynamic" || m.find("bf16") != std::string::npos) continue;
    for (int bs : {1, 16, 32}) params.push_back({m, bs});
    params.push_back({m, 16, kernels::BestCpuIsa(), KvDtype::kBf16});
  }
  return params;
}

INSTANTIATE_TEST_SUITE_P(Fp32Fixtures, MixedBatchTest, ::testing::ValuesIn(MixedParams()), ParamName);

}  // namespace
}  // namespace tessera
