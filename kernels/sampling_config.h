// A request's sampling knobs, shared by the CPU sampler (kernels/sampling.h) and the
// GPU one (kernels/cuda/sampling.cuh).
#pragma once

namespace tessera::kernels {

struct SamplingConfig {
  float temperature = 1.0f;  // 0: greedy
  float top_p = 1.0f;
  int top_k = 0;             // 0: off
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  bool logprobs = false;
  int top_logprobs = 0;
};

}  // namespace tessera::kernels
