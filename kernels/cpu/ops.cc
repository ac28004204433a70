#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/cpu/isa/simd.h"

namespace tessera::kernels {
namespace {

inline float Act(float v, Activation act) {
  switch (act) {
    case Activation::kSilu: return v / (1.0f + std::exp(-v));
    case Activation::kGeluTanh: {
      const float k = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * v * (1.0f + std::tanh(k * (v + 0.044715f * v * v * v)));
    }
    case Activation::kGeluErf: return 0.5f * v * (1.0f + std::erf(v * 0.7071067811865476f));
    case Activation::kRelu: return v > 0.0f ? v : 0.0f;
  }
  return v;
}

// Splits [0, rows) over the pool in contiguous chunks.
template <typename Fn>
void ForRows(int64_t rows, ThreadPool* pool, Fn fn) {
  const int tasks = static_cast<int>(std::min<int64_t>(rows, pool->num_threads()));
  const int64_t per = (rows + tasks - 1) / tasks;
  pool->Run(tasks, [&](int t) {
    for (int64_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) fn(r);
  });
}

}  // namespace

void RmsNorm(const float* x, int64_t rows, int64_t x_stride, int64_t dim, const float* weight,
             float eps, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* o = out + r * out_stride;
    const float ms = simd::Dot(xr, xr, static_cast<int>(dim)) / static_cast<float>(dim);
    const float inv = 1.0f / std::sqrt(ms + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = weight[i] * (xr[i] * inv);
  }
}

void LayerNorm(const float* x, int64_t rows, int64_t x_stride, int64_t dim, const float* weight,
               const float* bias, float eps, float* out, int64_t out_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * x_stride;
    float* o = out + r * out_stride;
    float mean = 0.0f;
    for (int64_t i = 0; i < dim; ++i) mean += xr[i];
    mean /= static_cast<float>(dim);
    float var = 0.0f;
    for (int64_t i = 0; i < dim; ++i) var += (xr[i] - mean) * (xr[i] - mean);
    var /= static_cast<float>(dim);
    const float inv = 1.0f / std::sqrt(var + eps);
    for (int64_t i = 0; i < dim; ++i) o[i] = (xr[i] - mean) * inv * weight[i] + bias[i];
  }
}

void GatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act,
                     float* out, ThreadPool* pool) {
  ForRows(rows, pool, [&](int64_t r) {
    const float* g = gate_up + r * 2 * inner;
    const float* u = g + inner;
    float* o = out + r * inner;
    for (int64_t i = 0; i < inner; ++i) o[i] = Act(g[i], act) * u[i];
  });
}

void ApplyActivation(float* x, int64_t rows, int64_t dim, Activation act, ThreadPool* pool) {
  ForRows(rows, pool, [&](int64_t r) {
    float* xr = x + r * dim;
    for (int64_t i = 0; i < dim; ++i) xr[i] = Act(xr[i], act);
  });
}

void ApplyRotary(float* head, const float* cos, const float* sin, int rot_dim) {
  const int half = rot_dim / 2;
  for (int i = 0; i < half; ++i) {
    const float a = head[i], b = head[i + half];
    head[i] = a * cos[i] - b * sin[i];
    head[i + half] = b * cos[i] + a * sin[i];
  }
}

void Softmax(float* x, int n) {
  const float mx = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (int i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  for (int i = 0; i < n; ++i) x[i] /= sum;
}

void RotaryCosSin(const float* inv_freq, int half, int64_t pos, float scale, float* cos, float* sin) {
  for (int j = 0; j < half; ++j) {
    const float angle = static_cast<float>(pos) * inv_freq[j];  // float32 product, as torch
    cos[j] = static_cast<float>(std::cos(static_cast<double>(angle))) * scale;
    sin[j] = static_cast<float>(std::sin(static_cast<double>(angle))) * scale;
  }
}

void RouteTopK(float* logits, int experts, int k, int32_t* ids, float* weights, bool renormalize) {
  Softmax(logits, experts);
  std::vector<int32_t> order(experts);
  std::iota(order.begin(), order.end(), 0);
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  float sum = 0.0f;
  for (int j = 0; j < k; ++j) sum += logits[order[j]];
  for (int j = 0; j < k; ++j) {
    ids[j] = order[j];
    weights[j] = renormalize ? logits[order[j]] / sum : logits[order[j]];
  }
}

}  // namespace tessera::kernels
