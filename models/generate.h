// Single-sequence helpers on top of Model: full-prompt logits and greedy decoding with
// a private paged KV cache. Used by the CLI and as the reference in tests; serving
// goes through the scheduler instead.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/kv_layout.h"
#include "models/model.h"

namespace tessera::models {

// Logits of every prompt position, [prompt.size(), vocab] row-major.
absl::StatusOr<std::vector<float>> PromptLogits(Model& model, std::span<const int32_t> prompt,
                                                int block_size = kvstore::kDefaultBlockSize,
                                                KvDtype kv_dtype = KvDtype::kF32);

struct GreedyOptions {
  int max_new_tokens = 16;
  int block_size = kvstore::kDefaultBlockSize;  // KV cache tokens per block
  KvDtype kv_dtype = KvDtype::kF32;             // and its element type
  // What the sequence keeps (models/kv_retention.h): bounded, the cache holds the
  // sinks and the window (the prompt goes in chunks), however long the sequence runs.
  KvRetention retention;
  // When set, receives the logits of every step ([steps, vocab]: the prefill's last
  // position, then each decode step).
  std::vector<float>* step_logits = nullptr;
  // When set, called with each new token as soon as it is chosen; returning false
  // stops generation after that token (streaming output, stop on EOS).
  std::function<bool(int32_t)> on_token;
};

// Greedy continuation of `prompt` (argmax, first index on ties): max_new_tokens tokens
// unless on_token stops it earlier. EOS is not special here.
absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Model& model, std::span<const int32_t> prompt,
                                                    const GreedyOptions& options);

struct PerplexityOptions {
  int context = 0;  // tokens per window (0: the model's max_position_embeddings)
  int stride = 0;   // tokens between window starts (0: half the context)
  int block_size = kvstore::kDefaultBlockSize;
  KvDtype kv_dtype = KvDtype::kF32;
  // Bounded: streaming evaluation instead of windows (context and stride unset): the
  // text is one sequence that keeps only what the retention says, fed in chunks, and
  // every token is scored from what that cache holds (StreamingLLM's evaluation).
  KvRetention retention;
  // Also computes every window with a cache of this dtype and compares the two
  // next-token distributions at each scored token (PerplexityResult::reference):
  // what a KV dtype costs, measured on the same windows.
  std::optional<KvDtype> reference_kv_dtype;
};

// The scored tokens' next-token distributions against the reference dtype's, as
// llama.cpp's `llama-perplexity --kl-divergence` compares a quantized model with its base.
struct ReferenceComparison {
  KvDtype kv_dtype = KvDtype::kF32;
  double nll = 0;        // the reference's summed negative log-likelihood, nats
  double kld = 0;        // summed KL(reference || evaluated), nats
  int64_t same_top = 0;  // tokens whose top prediction is the reference's
  // Where the top predictions differ: the reference's top logit minus its logit of the
  // token the evaluated cache put on top (how near a tie the difference broke).
  std::vector<float> changed_top_margins;
};

struct PerplexityResult {
  double nll = 0;      // summed negative log-likelihood of the scored tokens, nats
  int64_t tokens = 0;  // tokens scored: every one but the first
  int64_t windows = 0;
  int context = 0, stride = 0;                   // as used
  std::optional<ReferenceComparison> reference;  // with PerplexityOptions::reference_kv_dtype
  double perplexity() const;                     // exp(nll / tokens)
};

// The options with their defaults filled in for `spec`, checked against it and against
// `tokens` (INVALID_ARGUMENT naming what is wrong): callers check before loading weights.
absl::StatusOr<PerplexityOptions> ResolvePerplexityOptions(const ModelSpec& spec, std::span<const int32_t> tokens,
                                                           PerplexityOptions options);

// Sliding-window perplexity of `tokens` (or streaming, with a bounded retention), the
// method of HuggingFace transformers' perplexity guide: windows of `context` tokens start `stride` apart; each scores the
// tokens the windows before it did not reach, predicted from the window's tokens
// before them (so each token but the first is scored once, with at least
// context - stride tokens of context once the first window is passed).
absl::StatusOr<PerplexityResult> Perplexity(Model& model, std::span<const int32_t> tokens,
                                            const PerplexityOptions& options);

// A sequence's embedding from its pooled state (Model::Forward's `pooled` row; for
// kMean the sum over all its `tokens` tokens, however many chunks computed them): the
// mean for kMean, then L2-normalised. The serving path (worker/step_executor.cc) and
// Embed below both end here.
std::vector<float> FinishEmbedding(std::vector<float> pooled, int64_t tokens, Pooling pooling);

// The embedding of `tokens` computed in one forward pass (the CLI's `tessera embed`,
// and the reference in tests).
absl::StatusOr<std::vector<float>> Embed(Model& model, std::span<const int32_t> tokens, Pooling pooling,
                                         int block_size = kvstore::kDefaultBlockSize,
                                         KvDtype kv_dtype = KvDtype::kF32);

// Index of the largest value (the first on ties, like torch.argmax).
int32_t ArgMax(const float* values, int64_t n);

}  // namespace tessera::models
