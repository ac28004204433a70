// A model family: how one HF architecture's config.json keys and tensor names map
// onto ModelSpec and the weights of the one transformer (see models/model.h).
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "models/model_spec.h"
#include "nlohmann/json_fwd.hpp"

namespace tessera::models::internal {

// One checkpoint tensor; `transposed` when stored [in, out] (GPT-2's Conv1D).
struct TensorRef {
  std::string name;
  bool transposed = false;
};

// A linear layer whose weight is the row-wise concatenation of `weights` (fused q|k|v,
// gate|up) and whose bias, when present, is the concatenation of `biases`.
struct LinearNames {
  std::vector<TensorRef> weights;
  std::vector<std::string> biases;
};

struct NormNames {
  std::string weight;
  std::string bias;  // empty: no bias (RMSNorm)
};

struct LayerNames {
  NormNames attn_norm;
  LinearNames qkv;
  LinearNames o;
  NormNames mlp_norm;
  LinearNames gate_up;  // dense MLP: [gate | up] when gated, the fc layer otherwise
  LinearNames down;
  LinearNames router;   // MoE only
  std::vector<LinearNames> expert_gate_up;
  std::vector<LinearNames> expert_down;
};

struct CheckpointNames {
  std::string token_embedding;
  std::string position_embedding;  // learned positions only
  NormNames final_norm;
  LinearNames lm_head;  // empty weights: tied to the token embedding
  std::vector<LayerNames> layers;
};

using HasTensor = std::function<bool(const std::string&)>;

struct Family {
  std::string_view architecture;  // HF `architectures[0]`
  std::string_view name;
  absl::Status (*parse_config)(const nlohmann::json& config, ModelSpec* spec);
  CheckpointNames (*tensor_names)(const ModelSpec& spec, const HasTensor& has);
};

// nullptr for an architecture Tessera does not know.
const Family* FindFamily(std::string_view architecture);
std::string KnownArchitectures();

}  // namespace tessera::models::internal
