// Token sampling from one row of logits: penalties, temperature, top-k, top-p, min-p,
// and log-probabilities. Deterministic given the uniform draw, so a seeded request
// gives the same tokens wherever it runs.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "kernels/sampling_config.h"

namespace tessera::kernels {

// What the sequence has produced so far, for the penalties.
struct TokenHistory {
  absl::flat_hash_map<int32_t, int32_t> output_counts;  // generated token -> occurrences
  absl::flat_hash_map<int32_t, bool> prompt_tokens;     // set of prompt tokens
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0.0f;                            // log p(token) under the raw model
  std::vector<std::pair<int32_t, float>> top;      // top_logprobs most likely, descending
};

// Samples one token. `logits` is modified (penalties, temperature). `uniform` is a
// draw in [0, 1); ignored when greedy.
SampledToken SampleToken(float* logits, int32_t vocab, const SamplingConfig& config,
                         const TokenHistory& history, double uniform);

// A uniform draw in [0, 1) that depends only on (seed, index): the counter-based
// generator that makes seeded sampling repeat exactly after a recompute.
double CounterUniform(uint64_t seed, uint64_t index);

}  // namespace tessera::kernels
