// Single-sequence helpers on top of Model: full-prompt logits and greedy decoding with
// a private paged KV cache. Used by the CLI and as the reference in tests; serving
// goes through the scheduler instead.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/kv_layout.h"
#include "models/model.h"

namespace tessera::models {

// Logits of every prompt position, [prompt.size(), vocab] row-major.
absl::StatusOr<std::vector<float>> PromptLogits(Model& model, std::span<const int32_t> prompt,
                                                int block_size = kvstore::kDefaultBlockSize);

struct GreedyOptions {
  int max_new_tokens = 16;
  int block_size = kvstore::kDefaultBlockSize;  // KV cache tokens per block
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

// Index of the largest value (the first on ties, like torch.argmax).
int32_t ArgMax(const float* values, int64_t n);

}  // namespace tessera::models
