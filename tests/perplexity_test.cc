// models::Perplexity: one window against the definition, sliding windows against a
// model that sees only a window anyway, the window arithmetic, and bad options; the
// streaming evaluation of bounded KV policies (models/kv_retention.h) likewise.
#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "models/generate.h"
#include "tests/golden_fixture.h"

namespace tessera::models {
namespace {

std::vector<int32_t> RandomTokens(int n, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> tokens(n);
  for (auto& t : tokens) t = static_cast<int32_t>(rng() % vocab);
  return tokens;
}

std::unique_ptr<Model> Load(const std::string& name) {
  auto model = Model::Load(testing::GoldenModelDir(name));
  EXPECT_TRUE(model.ok()) << model.status();
  return std::move(*model);
}

// exp of the mean of -log p(token | every token before it), from one forward pass.
double FullAttentionPerplexity(Model& model, std::span<const int32_t> tokens) {
  const int vocab = model.spec().vocab_size;
  auto logits = PromptLogits(model, tokens);
  EXPECT_TRUE(logits.ok()) << logits.status();
  double nll = 0;
  for (size_t t = 1; t < tokens.size(); ++t) {
    const float* row = logits->data() + (t - 1) * vocab;
    double z = 0;
    for (int v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]));
    nll -= std::log(std::exp(static_cast<double>(row[tokens[t]])) / z);
  }
  return std::exp(nll / static_cast<double>(tokens.size() - 1));
}

// A window holding the whole text: exp of the mean of -log p(token | the ones before),
// every token after the first, from the logits of every position.
TEST(PerplexityTest, OneWindowIsTheDefinition) {
  auto model = Load("llama");
  const std::vector<int32_t> tokens = RandomTokens(40, model->spec().vocab_size, 1);
  const double expected = FullAttentionPerplexity(*model, tokens);
  auto result = Perplexity(*model, tokens, {.context = 64});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, 39);
  EXPECT_EQ(result->windows, 1);
  EXPECT_NEAR(result->perplexity(), expected, 1e-9 * expected);
}

// The golden Mistral reads only 8 keys: windows of 32 that score only tokens with at
// least 16 before them in the window see what the whole sequence shows them, so the
// sliding result equals the one-window one (up to rounding: RoPE positions differ).
TEST(PerplexityTest, SlidingWindowsScoreEachTokenOnce) {
  auto model = Load("mistral");
  const std::vector<int32_t> tokens = RandomTokens(100, model->spec().vocab_size, 2);
  auto whole = Perplexity(*model, tokens, {.context = 128});
  auto sliding = Perplexity(*model, tokens, {.context = 32, .stride = 16});
  ASSERT_TRUE(whole.ok() && sliding.ok());
  EXPECT_EQ(sliding->windows, 6);  // starts 0, 16, 32, 48, 64, 80 (the last ends at 100)
  EXPECT_EQ(sliding->tokens, 99);
  EXPECT_NEAR(sliding->perplexity(), whole->perplexity(), 1e-4 * whole->perplexity());
  // A context shorter than the model's window does change what tokens see.
  auto short_context = Perplexity(*model, tokens, {.context = 4, .stride = 2});
  ASSERT_TRUE(short_context.ok());
  EXPECT_GT(std::abs(short_context->perplexity() - whole->perplexity()), 1e-3 * whole->perplexity());
  // Defaults: the model's context (128 here), stride half of it.
  auto defaults = Perplexity(*model, tokens, {});
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->context, 128);
  EXPECT_EQ(defaults->stride, 64);
}

// Streaming with a window longer than the text is full attention, over several chunks
// (the stream goes 512 tokens at a time) and past the model's 128 positions (RoPE).
TEST(PerplexityTest, StreamingWithAWindowOverTheWholeTextIsFullAttention) {
  auto model = Load("llama");
  const std::vector<int32_t> tokens = RandomTokens(700, model->spec().vocab_size, 4);
  for (const KvRetention retention : {KvRetention{1024, 0}, KvRetention{1024, 4}}) {
    auto streamed = Perplexity(*model, tokens, {.retention = retention});
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    EXPECT_EQ(streamed->tokens, 699);
    const double full = FullAttentionPerplexity(*model, tokens);
    EXPECT_NEAR(streamed->perplexity(), full, 1e-5 * full);
  }
}

// Mistral reads 8 keys: a window policy of 8 (or wider: the model's own is narrower)
// changes nothing, while its blocks are released as the stream runs; sinks do change
// what tokens see, and a narrower window more so.
TEST(PerplexityTest, StreamingKeepsWhatThePolicySays) {
  auto model = Load("mistral");
  const std::vector<int32_t> tokens = RandomTokens(600, model->spec().vocab_size, 5);
  const double full = FullAttentionPerplexity(*model, tokens);
  for (const int window : {8, 100}) {
    auto streamed = Perplexity(*model, tokens, {.block_size = 4, .retention = {window, 0}});
    ASSERT_TRUE(streamed.ok()) << streamed.status();
    EXPECT_NEAR(streamed->perplexity(), full, 1e-5 * full) << window;
  }
  auto sinks = Perplexity(*model, tokens, {.block_size = 4, .retention = {8, 4}});
  auto narrow = Perplexity(*model, tokens, {.block_size = 4, .retention = {4, 0}});
  ASSERT_TRUE(sinks.ok() && narrow.ok());
  EXPECT_GT(std::abs(sinks->perplexity() - full), 1e-3 * full);
  EXPECT_GT(std::abs(narrow->perplexity() - full), 1e-3 * full);
  // The block size does not change what a policy reads.
  auto sinks16 = Perplexity(*model, tokens, {.retention = {8, 4}});
  ASSERT_TRUE(sinks16.ok());
  EXPECT_NEAR(sinks16->perplexity(), sinks->perplexity(), 1e-5 * sinks->perplexity());
}

// Against a reference dtype: the reference's figures are a run with that dtype's (on
// windows and streamed), a reference of the same dtype differs in nothing, and the KL
// divergence, top-token agreement and margins are the two caches' logits', computed
// here from the definition.
TEST(PerplexityTest, AReferenceDtypeIsComparedTokenByToken) {
  auto model = Load("llama");
  const int vocab = model->spec().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(60, vocab, 7);
  for (const PerplexityOptions& how : {PerplexityOptions{.context = 64}, PerplexityOptions{.context = 32, .stride = 16},
                                       PerplexityOptions{.block_size = 4, .retention = {24, 4}}}) {
    PerplexityOptions f32 = how, int8 = how, int8_itself = how;
    int8.kv_dtype = int8_itself.kv_dtype = KvDtype::kInt8;
    int8.reference_kv_dtype = KvDtype::kF32;
    int8_itself.reference_kv_dtype = KvDtype::kInt8;
    auto plain = Perplexity(*model, tokens, f32);
    auto compared = Perplexity(*model, tokens, int8);
    auto itself = Perplexity(*model, tokens, int8_itself);
    ASSERT_TRUE(plain.ok() && compared.ok() && itself.ok()) << compared.status() << itself.status();
    EXPECT_FALSE(plain->reference.has_value());
    ASSERT_TRUE(compared->reference.has_value() && itself->reference.has_value());
    EXPECT_EQ(compared->reference->kv_dtype, KvDtype::kF32);
    EXPECT_EQ(compared->reference->nll, plain->nll);  // the same computation, bit for bit
    EXPECT_NE(compared->nll, plain->nll);
    EXPECT_GT(compared->reference->kld, 0);
    EXPECT_EQ(compared->reference->same_top + static_cast<int64_t>(compared->reference->changed_top_margins.size()),
              compared->tokens);
    EXPECT_EQ(itself->nll, compared->nll);
    EXPECT_EQ(itself->reference->nll, itself->nll);
    EXPECT_EQ(itself->reference->kld, 0.0);
    EXPECT_EQ(itself->reference->same_top, itself->tokens);
  }
  // One window holding the text, from the two caches' logits.
  auto int8_logits = PromptLogits(*model, tokens, kvstore::kDefaultBlockSize, KvDtype::kInt8);
  auto f32_logits = PromptLogits(*model, tokens, kvstore::kDefaultBlockSize, KvDtype::kF32);
  ASSERT_TRUE(int8_logits.ok() && f32_logits.ok());
  auto log_softmax = [&](const float* row) {
    double top = row[0], sum = 0;
    for (int v = 0; v < vocab; ++v) top = std::max(top, static_cast<double>(row[v]));
    for (int v = 0; v < vocab; ++v) sum += std::exp(row[v] - top);
    std::vector<double> out(vocab);
    for (int v = 0; v < vocab; ++v) out[v] = row[v] - top - std::log(sum);
    return out;
  };
  double kld = 0;
  int64_t same_top = 0;
  std::vector<float> margins;
  for (size_t t = 1; t < tokens.size(); ++t) {
    const float* evaluated = int8_logits->data() + (t - 1) * vocab;
    const float* reference = f32_logits->data() + (t - 1) * vocab;
    const std::vector<double> p = log_softmax(reference), q = log_softmax(evaluated);
    for (int v = 0; v < vocab; ++v) kld += std::exp(p[v]) * (p[v] - q[v]);
    const int32_t top = ArgMax(evaluated, vocab), reference_top = ArgMax(reference, vocab);
    if (top == reference_top) {
      ++same_top;
    } else {
      margins.push_back(reference[reference_top] - reference[top]);
    }
  }
  auto result = Perplexity(*model, tokens, {.context = 64, .kv_dtype = KvDtype::kInt8, .reference_kv_dtype = KvDtype::kF32});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_NEAR(result->reference->kld, kld, 1e-9 * kld);
  EXPECT_EQ(result->reference->same_top, same_top);
  EXPECT_EQ(result->reference->changed_top_margins, margins);
}

// Greedy decoding under a sink-window far past the pool a full cache would need:
// the same tokens with 1-token and 16-token blocks (the sinks span a block or part of
// one), and a prompt longer than the window.
TEST(PerplexityTest, GreedyDecodingRunsPastTheContextInTheWindowsBlocks) {
  auto model = Load("llama");
  const std::vector<int32_t> prompt = RandomTokens(40, model->spec().vocab_size, 6);
  GreedyOptions options{.max_new_tokens = 300, .block_size = 1, .retention = {24, 4}};
  auto small_blocks = GenerateGreedy(*model, prompt, options);
  options.block_size = 16;
  auto large_blocks = GenerateGreedy(*model, prompt, options);
  ASSERT_TRUE(small_blocks.ok() && large_blocks.ok()) << small_blocks.status() << large_blocks.status();
  EXPECT_EQ(*small_blocks, *large_blocks);
  EXPECT_EQ(small_blocks->size(), 300u);  // 340 tokens, past the model's 128 positions
}

TEST(PerplexityTest, BadOptionsAreInvalidArguments) {
  auto model = Load("llama");
  const std::vector<int32_t> tokens = RandomTokens(10, model->spec().vocab_size, 3);
  const int max = model->spec().max_position_embeddings;
  for (const PerplexityOptions& o : {PerplexityOptions{.context = 1}, PerplexityOptions{.context = max + 1},
                                     PerplexityOptions{.context = 8, .stride = 9}}) {
    EXPECT_EQ(Perplexity(*model, tokens, o).status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(Perplexity(*model, std::vector<int32_t>{5}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Perplexity(*model, std::vector<int32_t>{5, -1}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  // Streaming takes no context or stride, and needs rotary positions.
  EXPECT_EQ(Perplexity(*model, tokens, {.context = 8, .retention = {8, 4}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto gpt2 = Load("gpt2");
  EXPECT_EQ(Perplexity(*gpt2, tokens, {.retention = {8, 4}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GenerateGreedy(*gpt2, tokens, {.max_new_tokens = 2, .retention = {8, 4}}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tessera::models
