#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

namespace tessera::kernels {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// log-softmax normaliser: max + log(sum exp(x - max)).
double LogSumExp(const float* x, int32_t n) {
  const float mx = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int32_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(x[i] - mx));
  return mx + std::log(sum);
}

}  // namespace

double CounterUniform(uint64_t seed, uint64_t index) {
  const uint64_t bits = SplitMix64(SplitMix64(seed) ^ (index * 0xd1b54a32d192ed03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

SampledToken SampleToken(float* logits, int32_t vocab, const SamplingConfig& c, const TokenHistory& history,
                         double uniform) {
  SampledToken result;
  // Log-probabilities of the raw model, before any processing.
  std::vector<std::pair<int32_t, float>> top;
  double raw_lse = 0.0;
  if (c.logprobs) {
    raw_lse = LogSumExp(logits, vocab);
    if (c.top_logprobs > 0) {
      std::vector<int32_t> idx(vocab);
      std::iota(idx.begin(), idx.end(), 0);
      const int k = std::min<int32_t>(c.top_logprobs, vocab);
      std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                        [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
      for (int i = 0; i < k; ++i) top.emplace_back(idx[i], static_cast<float>(logits[idx[i]] - raw_lse));
    }
  }
  std::vector<float> raw;
  if (c.logprobs) raw.assign(logits, logits + vocab);

  // Penalties (as vLLM): repetition over prompt and output, presence/frequency over output.
  if (c.repetition_penalty != 1.0f) {
    auto penalise = [&](int32_t t) {
      if (t < 0 || t >= vocab) return;
      logits[t] = logits[t] > 0 ? logits[t] / c.repetition_penalty : logits[t] * c.repetition_penalty;
    };
    absl::flat_hash_map<int32_t, bool> seen = history.prompt_tokens;
    for (const auto& [t, n] : history.output_counts) seen[t] = true;
    for (const auto& [t, unused] : seen) penalise(t);
  }
  for (const auto& [t, n] : history.output_counts) {
    if (t < 0 || t >= vocab) continue;
    logits[t] -= c.frequency_penalty * static_cast<float>(n) + (n > 0 ? c.presence_penalty : 0.0f);
  }

  if (c.temperature <= 0.0f) {
    result.token = static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  } else {
    // Probabilities at temperature T, then the truncations on the sorted candidates.
    const float inv_t = 1.0f / c.temperature;
    const float mx = *std::max_element(logits, logits + vocab);
    std::vector<std::pair<float, int32_t>> cand(vocab);
    double sum = 0.0;
    for (int32_t i = 0; i < vocab; ++i) {
      const float p = std::exp((logits[i] - mx) * inv_t);
      cand[i] = {p, i};
      sum += p;
    }
    const bool truncate = c.top_k > 0 || c.top_p < 1.0f || c.min_p > 0.0f;
    size_t keep = cand.size();
    if (truncate) {
      auto by_prob = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
      if (c.top_k > 0 && c.top_k < vocab) {
        std::partial_sort(cand.begin(), cand.begin() + c.top_k, cand.end(), by_prob);
        keep = c.top_k;
      } else {
        std::sort(cand.begin(), cand.end(), by_prob);
      }
      double kept_sum = 0.0;
      for (size_t i = 0; i < keep; ++i) kept_sum += cand[i].first;
      if (c.top_p < 1.0f) {
        double cumulative = 0.0;
        for (size_t i = 0; i < keep; ++i) {
          cumulative += cand[i].first / kept_sum;
          if (cumulative >= c.top_p) {
            keep = i + 1;
            break;
          }
        }
      }
      if (c.min_p > 0.0f) {
        const float threshold = c.min_p * cand[0].first;
        size_t i = 1;
        while (i < keep && cand[i].first >= threshold) ++i;
        keep = i;
      }
      sum = 0.0;
      for (size_t i = 0; i < keep; ++i) sum += cand[i].first;
    }
    const double target = uniform * sum;
    double cumulative = 0.0;
    result.token = cand[keep - 1].second;
    for (size_t i = 0; i < keep; ++i) {
      cumulative += cand[i].first;
      if (cumulative > target) {
        result.token = cand[i].second;
        break;
      }
    }
  }
  if (c.logprobs) {
    result.logprob = static_cast<float>(raw[result.token] - raw_lse);
    result.top = std::move(top);
  }
  return result;
}

}  // namespace tessera::kernels
