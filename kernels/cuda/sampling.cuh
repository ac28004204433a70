// Token sampling on the GPU, with the CPU sampler's semantics (kernels/sampling.h is
// the oracle): penalties (repetition over prompt and output, presence/frequency over
// output, as vLLM), greedy at temperature 0, else probabilities at temperature T,
// truncated by top-k / top-p / min-p over the candidates sorted by probability (a CUB
// segmented radix sort, stable, so ties keep the lower token first), and a draw with the
// caller's uniform number (kernels::CounterUniform: seeded requests repeat anywhere).
// The sums that decide the draw run in the CPU's order, in double. Log-probabilities
// stay on the CPU path. Conventions as in norms.cuh.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/sampling_config.h"

namespace tessera::kernels::cuda {

// One row's sampling knobs (logprobs are not served here) and its share of the
// penalty lists.
struct SampleRow {
  SamplingConfig config;
  double uniform = 0.0;      // the draw, in [0, 1)
  int32_t penalty_offset = 0;  // into the penalty lists
  int32_t penalty_count = 0;
};

// Device workspace bytes LaunchSample needs for rows x vocab.
size_t SampleWorkspaceBytes(int64_t rows, int32_t vocab);

// Samples one token per row of `logits` ([rows, vocab], modified by the penalties).
// `rows_cfg`: [rows] on the device. Penalty lists (device): each row's distinct tokens
// seen in its prompt or output, with their output counts (0: prompt only).
int LaunchSample(float* logits, int64_t rows, int32_t vocab, const SampleRow* rows_cfg,
                 const int32_t* penalty_tokens, const int32_t* penalty_counts, void* workspace,
                 size_t workspace_bytes, int32_t* out_tokens, void* stream);

}  // namespace tessera::kernels::cuda
