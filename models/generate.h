// Single-sequence helpers on top of Model: full-prompt logits and greedy decoding with
// a private paged KV cache. Used by the CLI and as the reference in tests; serving
// goes through the scheduler instead.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/statusor.h"
#include "models/model.h"

namespace tessera::models {

// Logits of every prompt position, [prompt.size(), vocab] row-major.
absl::StatusOr<std::vector<float>> PromptLogits(Model& model, std::span<const int32_t> prompt,
                                                int block_size = 16);

// Greedy continuation of `prompt` (argmax, first index on ties), max_new_tokens long;
// does not stop at EOS. `step_logits`, when given, receives the logits of every
// step ([max_new_tokens, vocab]: the prefill's last position, then each decode step).
absl::StatusOr<std::vector<int32_t>> GenerateGreedy(Model& model, std::span<const int32_t> prompt,
                                                    int max_new_tokens, int block_size = 16,
                                                    std::vector<float>* step_logits = nullptr);

// Index of the largest value (the first on ties, like torch.argmax).
int32_t ArgMax(const float* values, int64_t n);

}  // namespace tessera::models
