// Rotary position embedding frequencies with HF's scaling variants
// (none, linear, dynamic NTK, static NTK, llama3, YaRN), computed in float32 like
// transformers.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "models/model_spec.h"

namespace tessera::models {

class RotaryEmbedding {
 public:
  explicit RotaryEmbedding(const ModelSpec& spec);

  int rot_dim() const { return head_dim_; }

  // Inverse frequencies [head_dim/2] for one forward call of a sequence whose highest
  // position in that call is call_len - 1. Only dynamic NTK depends on call_len (as in
  // transformers, keys cached earlier keep the rotation they were computed with).
  const std::vector<float>& InverseFrequencies(int64_t call_len, std::vector<float>* scratch) const;

  // The factor on cos and sin (YaRN's attention factor; else 1): kernels::RotaryCosSin
  // turns inverse frequencies and positions into the rotation.
  float attention_scale() const;

  // XPos's per-pair decay bases, zeta_j = (2j/d + 0.4) / 1.4 ([head_dim/2]; Sun et al.
  // 2022 with gamma = 0.4, as torchscale), when the spec has xpos_scale_base; else empty.
  std::span<const float> xpos_zeta() const { return xpos_zeta_; }

 private:
  std::vector<float> Frequencies(double base) const;

  RopeSpec rope_;
  int head_dim_;
  int max_positions_;
  std::vector<float> static_inv_freq_;  // every variant but dynamic
  std::vector<float> xpos_zeta_;
};

}  // namespace tessera::models
