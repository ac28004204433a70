// ModelSpec: the one description that every supported HF architecture maps onto.
//
// The five families differ only in the switches below; there is no per-family forward
// pass. ParseModelSpec reads a HuggingFace config.json and fills the spec through the
// family registered under its `architectures` string (see families.cc).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/kv_dtype.h"
#include "kernels/norm_kind.h"
#include "kernels/ops.h"

namespace tessera::models {

using NormKind = kernels::NormKind;
enum class PositionKind { kLearned, kRope };
// Where a layer's norms sit: before each sub-layer, whose output joins the residual
// (x + f(Norm(x)): GPT-2, LLaMA), or after the residual add (Norm(x + f(x)): the
// original Transformer; with residual_scale, DeepNorm's Norm(alpha*x + f(x))).
enum class NormPosition { kPre, kPost };
// kNtk: static NTK-aware scaling (base x factor^(d/(d-2)) at every length; "ntk" in
// rope_scaling), next to transformers' dynamic NTK (kDynamic), which grows the base
// only past the trained length.
enum class RopeScaling { kNone, kLinear, kDynamic, kNtk, kLlama3, kYarn };

struct RopeSpec {
  double theta = 10000.0;
  RopeScaling scaling = RopeScaling::kNone;
  double factor = 1.0;
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  double original_max_position_embeddings = 8192;
  // yarn
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  double attention_factor = 1.0;  // scales cos and sin
};

struct ModelSpec {
  std::string architecture;  // the HF class name, e.g. "LlamaForCausalLM"
  std::string family;        // gpt2 / llama / qwen2 / mistral / mixtral

  int vocab_size = 0;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  int intermediate_size = 0;  // per expert for MoE
  int max_position_embeddings = 0;

  NormKind norm = NormKind::kRmsNorm;
  float norm_eps = 1e-6f;
  NormPosition norm_position = NormPosition::kPre;
  float residual_scale = 1.0f;  // DeepNorm's alpha (post-norm only)
  // ScaleNorm (g * x / ||x||, one learned scalar g per norm): the checkpoint holds each
  // norm as one value; it is loaded as an RMSNorm of weight g/sqrt(d) with norm_eps
  // already eps^2/d, i.e. g * x / sqrt(||x||^2 + eps^2).
  bool scale_norm = false;
  bool final_norm = true;  // a norm before the LM head (pre-norm models)
  kernels::Activation activation = kernels::Activation::kSilu;
  bool gated_mlp = true;  // act(gate) * up (SwiGLU) vs act(fc) (GPT-2)

  PositionKind positions = PositionKind::kRope;
  RopeSpec rope;
  // XPos (Sun et al. 2022, "A Length-Extrapolatable Transformer"): > 0 scales rotated
  // queries by zeta^(n / xpos_scale_base) and keys by its inverse (RotaryEmbedding).
  float xpos_scale_base = 0;

  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;

  // Per layer: the sliding window in keys (the query itself included), 0 = full.
  std::vector<int> sliding_window;

  int num_experts = 0;          // > 0: MoE MLP (Mixtral)
  int experts_per_token = 0;    // top-k
  bool moe_renormalize = true;  // the k weights renormalised to sum to 1 (norm_topk_prob)

  bool tie_word_embeddings = false;
  // The checkpoint's dtype (config.json's torch_dtype) as a KV cache dtype: what
  // --kv-cache-dtype auto picks (f32 for anything but bfloat16 and float16).
  KvDtype dtype = KvDtype::kF32;
  std::vector<int> eos_token_ids;
  int bos_token_id = -1;

  bool is_moe() const { return num_experts > 0; }
  // The keys every layer reads back (the widest window) when every layer is windowed;
  // 0 when some layer attends to the whole sequence. KV blocks older than this are
  // never read again.
  int kv_window() const {
    int widest = 0;
    for (int w : sliding_window) {
      if (w == 0) return 0;
      widest = std::max(widest, w);
    }
    return widest;
  }
  int q_size() const { return num_heads * head_dim; }
  int kv_size() const { return num_kv_heads * head_dim; }
};

// Parses config.json text. Unknown architectures and missing or invalid keys give
// INVALID_ARGUMENT naming the key.
absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& config_json);

// The KV cache dtype a flag value names: "auto" (the model's dtype) or a KvDtype name;
// INVALID_ARGUMENT listing the choices otherwise.
absl::StatusOr<KvDtype> ResolveKvDtype(const std::string& flag, const ModelSpec& spec);

// Reads and parses DIR/config.json.
absl::StatusOr<ModelSpec> LoadModelSpec(const std::string& model_dir);

}  // namespace tessera::models
