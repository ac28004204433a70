// models::Perplexity: one window against the definition, sliding windows against a
// model that sees only a window anyway, the window arithmetic, and bad options.
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

// A window holding the whole text: exp of the mean of -log p(token | the ones before),
// every token after the first, from the logits of every position.
TEST(PerplexityTest, OneWindowIsTheDefinition) {
  auto model = Load("llama");
  const int vocab = model->spec().vocab_size;
  const std::vector<int32_t> tokens = RandomTokens(40, vocab, 1);
  auto logits = PromptLogits(*model, tokens);
  ASSERT_TRUE(logits.ok());
  double nll = 0;
  for (size_t t = 1; t < tokens.size(); ++t) {
    const float* row = logits->data() + (t - 1) * vocab;
    double z = 0;
    for (int v = 0; v < vocab; ++v) z += std::exp(static_cast<double>(row[v]));
    nll -= std::log(std::exp(static_cast<double>(row[tokens[t]])) / z);
  }
  auto result = Perplexity(*model, tokens, {.context = 64});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->tokens, 39);
  EXPECT_EQ(result->windows, 1);
  EXPECT_NEAR(result->perplexity(), std::exp(nll / 39), 1e-9 * std::exp(nll / 39));
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
}

}  // namespace
}  // namespace tessera::models
