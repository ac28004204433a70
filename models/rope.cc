#include "models/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace tessera::models {

RotaryEmbedding::RotaryEmbedding(const ModelSpec& spec)
    : rope_(spec.rope), head_dim_(spec.head_dim), max_positions_(spec.max_position_embeddings) {
  if (spec.xpos_scale_base > 0) {
    constexpr double kGamma = 0.4;
    for (int j = 0; j < head_dim_ / 2; ++j) {
      xpos_zeta_.push_back(static_cast<float>((2.0 * j / head_dim_ + kGamma) / (1 + kGamma)));
    }
  }
  std::vector<float> f = Frequencies(rope_.theta);
  const int half = head_dim_ / 2;
  switch (rope_.scaling) {
    case RopeScaling::kNone:
    case RopeScaling::kDynamic:
      break;
    case RopeScaling::kNtk: {  // "NTK-aware scaled RoPE" (bloc97, 2023), static
      const double d = head_dim_;
      f = Frequencies(rope_.theta * std::pow(rope_.factor, d / (d - 2)));
      break;
    }
    case RopeScaling::kLinear:
      for (float& v : f) v = static_cast<float>(v / rope_.factor);
      break;
    case RopeScaling::kLlama3: {
      const double old = rope_.original_max_position_embeddings;
      const double low_wavelen = old / rope_.low_freq_factor;
      const double high_wavelen = old / rope_.high_freq_factor;
      for (float& v : f) {
        const double wavelen = 2 * std::numbers::pi / v;
        if (wavelen < high_wavelen) continue;
        if (wavelen > low_wavelen) {
          v = static_cast<float>(v / rope_.factor);
        } else {
          const double s = (old / wavelen - rope_.low_freq_factor) /
                           (rope_.high_freq_factor - rope_.low_freq_factor);
          v = static_cast<float>((1 - s) * v / rope_.factor + s * v);
        }
      }
      break;
    }
    case RopeScaling::kYarn: {
      const double d = head_dim_, base = rope_.theta, len = max_positions_;
      auto correction_dim = [&](double rotations) {
        return d * std::log(len / (rotations * 2 * std::numbers::pi)) / (2 * std::log(base));
      };
      double low = std::max(std::floor(correction_dim(rope_.beta_fast)), 0.0);
      double high = std::min(std::ceil(correction_dim(rope_.beta_slow)), d - 1);
      if (low == high) high += 0.001;
      for (int j = 0; j < half; ++j) {
        const double ramp = std::clamp((j - low) / (high - low), 0.0, 1.0);
        const double extrapolated = f[j];
        const double interpolated = f[j] / rope_.factor;
        f[j] = static_cast<float>(interpolated * ramp + extrapolated * (1 - ramp));
      }
      break;
    }
  }
  static_inv_freq_ = std::move(f);
}

std::vector<float> RotaryEmbedding::Frequencies(double base) const {
  const int half = head_dim_ / 2;
  std::vector<float> f(half);
  for (int j = 0; j < half; ++j) {
    const float exponent = static_cast<float>(2 * j) / static_cast<float>(head_dim_);
    f[j] = static_cast<float>(1.0 / std::pow(base, static_cast<double>(exponent)));
  }
  return f;
}

const std::vector<float>& RotaryEmbedding::InverseFrequencies(int64_t call_len,
                                                              std::vector<float>* scratch) const {
  if (rope_.scaling != RopeScaling::kDynamic || call_len <= max_positions_) return static_inv_freq_;
  const double d = head_dim_;
  const double base = rope_.theta * std::pow(rope_.factor * call_len / max_positions_ - (rope_.factor - 1),
                                             d / (d - 2));
  *scratch = Frequencies(base);
  return *scratch;
}

float RotaryEmbedding::attention_scale() const {
  return rope_.scaling == RopeScaling::kYarn ? static_cast<float>(rope_.attention_factor) : 1.0f;
}

}  // namespace tessera::models
