// The registered families: each maps an HF architecture's config keys and tensor
// names onto ModelSpec. LLaMA, Mistral, Qwen2 and Mixtral share one naming scheme and
// differ in a few switches; GPT-2 has its own names and Conv1D ([in, out]) weights.
#include <array>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "models/internal/config_reader.h"
#include "models/internal/family.h"

namespace tessera::models::internal {
namespace {

using nlohmann::json;

absl::StatusOr<kernels::Activation> ParseActivation(const std::string& name) {
  if (name == "silu" || name == "swish") return kernels::Activation::kSilu;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh") return kernels::Activation::kGeluTanh;
  if (name == "gelu") return kernels::Activation::kGeluErf;
  if (name == "relu") return kernels::Activation::kRelu;
  return absl::InvalidArgumentError(absl::StrCat("config.json: unsupported activation '", name, "'"));
}

absl::Status ParseRopeScaling(const json& config, ModelSpec* spec) {
  RopeSpec& rope = spec->rope;
  ASSIGN_OR_RETURN(rope.theta, ReadKeyOr<double>(config, "rope_theta", 10000.0));
  if (!config.contains("rope_scaling") || config["rope_scaling"].is_null()) return absl::OkStatus();
  const json& rs = config["rope_scaling"];
  if (!rs.is_object()) return absl::InvalidArgumentError("config.json: rope_scaling is not an object");
  // transformers accepts both spellings; "rope_type" wins.
  std::string type;
  if (rs.contains("rope_type")) {
    ASSIGN_OR_RETURN(type, ReadKey<std::string>(rs, "rope_type"));
  } else {
    ASSIGN_OR_RETURN(type, ReadKey<std::string>(rs, "type"));
  }
  if (type == "default") return absl::OkStatus();
  ASSIGN_OR_RETURN(rope.factor, ReadKey<double>(rs, "factor"));
  if (rope.factor <= 0) return absl::InvalidArgumentError("config.json: rope_scaling.factor must be > 0");
  if (type == "linear") {
    rope.scaling = RopeScaling::kLinear;
  } else if (type == "dynamic") {
    rope.scaling = RopeScaling::kDynamic;
  } else if (type == "ntk") {
    rope.scaling = RopeScaling::kNtk;
  } else if (type == "llama3") {
    rope.scaling = RopeScaling::kLlama3;
    ASSIGN_OR_RETURN(rope.low_freq_factor, ReadKey<double>(rs, "low_freq_factor"));
    ASSIGN_OR_RETURN(rope.high_freq_factor, ReadKey<double>(rs, "high_freq_factor"));
    ASSIGN_OR_RETURN(rope.original_max_position_embeddings,
                     ReadKey<double>(rs, "original_max_position_embeddings"));
    if (rope.high_freq_factor <= rope.low_freq_factor) {
      return absl::InvalidArgumentError("config.json: llama3 rope needs high_freq_factor > low_freq_factor");
    }
  } else if (type == "yarn") {
    rope.scaling = RopeScaling::kYarn;
    ASSIGN_OR_RETURN(rope.beta_fast, ReadKeyOr<double>(rs, "beta_fast", 32.0));
    ASSIGN_OR_RETURN(rope.beta_slow, ReadKeyOr<double>(rs, "beta_slow", 1.0));
    const double default_attention = rope.factor <= 1 ? 1.0 : 0.1 * std::log(rope.factor) + 1.0;
    ASSIGN_OR_RETURN(rope.attention_factor, ReadKeyOr<double>(rs, "attention_factor", default_attention));
  } else {
    return absl::InvalidArgumentError(absl::StrCat("config.json: unsupported rope_scaling type '", type,
                                                   "' (supported: linear, dynamic, ntk, llama3, yarn)"));
  }
  return absl::OkStatus();
}

// Keys shared by LLaMA, Mistral, Qwen2 and Mixtral.
absl::Status ParseLlamaLike(const json& c, ModelSpec* spec) {
  ASSIGN_OR_RETURN(spec->vocab_size, ReadSize(c, "vocab_size", kMaxVocabSize));
  ASSIGN_OR_RETURN(spec->hidden_size, ReadSize(c, "hidden_size", kMaxHiddenSize));
  ASSIGN_OR_RETURN(spec->num_layers, ReadSize(c, "num_hidden_layers", kMaxLayers));
  ASSIGN_OR_RETURN(spec->num_heads, ReadSize(c, "num_attention_heads", kMaxHeads));
  ASSIGN_OR_RETURN(spec->num_kv_heads, ReadSize(c, "num_key_value_heads", kMaxHeads, spec->num_heads));
  ASSIGN_OR_RETURN(spec->head_dim, ReadSize(c, "head_dim", kMaxHeadDim, spec->hidden_size / spec->num_heads));
  ASSIGN_OR_RETURN(spec->intermediate_size, ReadSize(c, "intermediate_size", kMaxIntermediateSize));
  ASSIGN_OR_RETURN(spec->max_position_embeddings, ReadSize(c, "max_position_embeddings", kMaxPositions));
  ASSIGN_OR_RETURN(double eps, ReadKeyOr<double>(c, "rms_norm_eps", 1e-6));
  spec->norm_eps = static_cast<float>(eps);
  spec->norm = NormKind::kRmsNorm;
  ASSIGN_OR_RETURN(std::string act, ReadKeyOr<std::string>(c, "hidden_act", "silu"));
  ASSIGN_OR_RETURN(spec->activation, ParseActivation(act));
  spec->gated_mlp = true;
  spec->positions = PositionKind::kRope;
  ASSIGN_OR_RETURN(spec->tie_word_embeddings, ReadKeyOr<bool>(c, "tie_word_embeddings", false));
  spec->sliding_window.assign(spec->num_layers, 0);
  return ParseRopeScaling(c, spec);
}

absl::Status ParseLlama(const json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(ParseLlamaLike(c, spec));
  ASSIGN_OR_RETURN(bool attention_bias, ReadKeyOr<bool>(c, "attention_bias", false));
  spec->qkv_bias = spec->o_bias = attention_bias;
  ASSIGN_OR_RETURN(spec->mlp_bias, ReadKeyOr<bool>(c, "mlp_bias", false));
  return absl::OkStatus();
}

// Mistral and Mixtral: one sliding window for every layer when set.
absl::Status ParseWindowAllLayers(const json& c, ModelSpec* spec) {
  ASSIGN_OR_RETURN(int window, ReadKeyOr<int>(c, "sliding_window", 0));
  if (window < 0) return absl::InvalidArgumentError("config.json: sliding_window must be >= 0");
  spec->sliding_window.assign(spec->num_layers, window);
  return absl::OkStatus();
}

absl::Status ParseMistral(const json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(ParseLlamaLike(c, spec));
  return ParseWindowAllLayers(c, spec);
}

absl::Status ParseQwen2(const json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(ParseLlamaLike(c, spec));
  spec->qkv_bias = true;
  // use_sliding_window: false means full attention whatever sliding_window says.
  ASSIGN_OR_RETURN(bool use_window, ReadKeyOr<bool>(c, "use_sliding_window", false));
  if (use_window) {
    ASSIGN_OR_RETURN(int window, ReadKey<int>(c, "sliding_window"));
    ASSIGN_OR_RETURN(int first, ReadKeyOr<int>(c, "max_window_layers", 0));
    for (int l = std::max(first, 0); l < spec->num_layers; ++l) spec->sliding_window[l] = window;
  }
  return absl::OkStatus();
}

// Mixtral's MoE keys (TesseraForCausalLM's too).
absl::Status ParseMoe(const json& c, ModelSpec* spec) {
  ASSIGN_OR_RETURN(spec->num_experts, ReadSize(c, "num_local_experts", kMaxExperts));
  ASSIGN_OR_RETURN(spec->experts_per_token, ReadSize(c, "num_experts_per_tok", kMaxExperts));
  if (spec->num_experts <= 0 || spec->experts_per_token <= 0 ||
      spec->experts_per_token > spec->num_experts) {
    return absl::InvalidArgumentError(
        "config.json: need 0 < num_experts_per_tok <= num_local_experts");
  }
  return absl::OkStatus();
}

absl::Status ParseMixtral(const json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(ParseLlamaLike(c, spec));
  RETURN_IF_ERROR(ParseWindowAllLayers(c, spec));
  return ParseMoe(c, spec);
}

// Tessera's own family: LLaMA's keys and tensor names, with every switch the design
// brief describes stated in config.json (docs/models.md, "TesseraForCausalLM").
absl::Status ParseTessera(const json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(ParseLlamaLike(c, spec));
  ASSIGN_OR_RETURN(double eps, ReadKeyOr<double>(c, "norm_eps", 1e-5));
  spec->norm_eps = static_cast<float>(eps);
  ASSIGN_OR_RETURN(std::string norm, ReadKeyOr<std::string>(c, "norm_type", "rms_norm"));
  if (norm == "rms_norm") {
    spec->norm = NormKind::kRmsNorm;
  } else if (norm == "layer_norm") {
    spec->norm = NormKind::kLayerNorm;
  } else if (norm == "scale_norm") {
    spec->norm = NormKind::kRmsNorm;  // g/sqrt(d) * x / sqrt(mean(x^2) + eps^2/d)
    spec->scale_norm = true;
    spec->norm_eps = static_cast<float>(eps * eps / spec->hidden_size);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: norm_type '", norm, "' (rms_norm, layer_norm or scale_norm)"));
  }
  ASSIGN_OR_RETURN(std::string position, ReadKeyOr<std::string>(c, "norm_position", "pre"));
  if (position != "pre" && position != "post") {
    return absl::InvalidArgumentError("config.json: norm_position must be \"pre\" or \"post\"");
  }
  spec->norm_position = position == "pre" ? NormPosition::kPre : NormPosition::kPost;
  spec->final_norm = spec->norm_position == NormPosition::kPre;  // post-norm layers end normalised
  ASSIGN_OR_RETURN(double alpha, ReadKeyOr<double>(c, "deepnorm_alpha", 1.0));
  if (!(alpha > 0) || (alpha != 1.0 && spec->norm_position != NormPosition::kPost)) {
    return absl::InvalidArgumentError("config.json: deepnorm_alpha must be > 0, and needs norm_position \"post\"");
  }
  spec->residual_scale = static_cast<float>(alpha);
  ASSIGN_OR_RETURN(std::string positions, ReadKeyOr<std::string>(c, "position_embedding", "rope"));
  if (positions != "rope" && positions != "xpos") {
    return absl::InvalidArgumentError("config.json: position_embedding must be \"rope\" or \"xpos\"");
  }
  if (positions == "xpos") {
    ASSIGN_OR_RETURN(double base, ReadKeyOr<double>(c, "xpos_scale_base", 512.0));
    if (!(base > 0)) return absl::InvalidArgumentError("config.json: xpos_scale_base must be > 0");
    spec->xpos_scale_base = static_cast<float>(base);
  }
  ASSIGN_OR_RETURN(std::string mlp, ReadKeyOr<std::string>(c, "mlp_type", "gated"));
  if (mlp != "gated" && mlp != "plain") {
    return absl::InvalidArgumentError("config.json: mlp_type must be \"gated\" or \"plain\"");
  }
  spec->gated_mlp = mlp == "gated";
  ASSIGN_OR_RETURN(bool attention_bias, ReadKeyOr<bool>(c, "attention_bias", false));
  spec->qkv_bias = spec->o_bias = attention_bias;
  ASSIGN_OR_RETURN(spec->mlp_bias, ReadKeyOr<bool>(c, "mlp_bias", false));
  RETURN_IF_ERROR(ParseWindowAllLayers(c, spec));
  ASSIGN_OR_RETURN(int experts, ReadKeyOr<int>(c, "num_local_experts", 0));
  if (experts > 0) {
    RETURN_IF_ERROR(ParseMoe(c, spec));
    ASSIGN_OR_RETURN(spec->moe_renormalize, ReadKeyOr<bool>(c, "norm_topk_prob", true));
  }
  return absl::OkStatus();
}

absl::Status ParseGpt2(const json& c, ModelSpec* spec) {
  ASSIGN_OR_RETURN(spec->vocab_size, ReadSize(c, "vocab_size", kMaxVocabSize));
  ASSIGN_OR_RETURN(spec->hidden_size, ReadSize(c, "n_embd", kMaxHiddenSize));
  ASSIGN_OR_RETURN(spec->num_layers, ReadSize(c, "n_layer", kMaxLayers));
  ASSIGN_OR_RETURN(spec->num_heads, ReadSize(c, "n_head", kMaxHeads));
  spec->num_kv_heads = spec->num_heads;
  spec->head_dim = spec->hidden_size / spec->num_heads;
  ASSIGN_OR_RETURN(spec->intermediate_size, ReadSize(c, "n_inner", kMaxIntermediateSize, 4 * spec->hidden_size));
  ASSIGN_OR_RETURN(spec->max_position_embeddings, ReadSize(c, "n_positions", kMaxPositions));
  ASSIGN_OR_RETURN(double eps, ReadKeyOr<double>(c, "layer_norm_epsilon", 1e-5));
  spec->norm_eps = static_cast<float>(eps);
  spec->norm = NormKind::kLayerNorm;
  ASSIGN_OR_RETURN(std::string act, ReadKeyOr<std::string>(c, "activation_function", "gelu_new"));
  ASSIGN_OR_RETURN(spec->activation, ParseActivation(act));
  spec->gated_mlp = false;
  spec->positions = PositionKind::kLearned;
  spec->qkv_bias = spec->o_bias = spec->mlp_bias = true;
  spec->tie_word_embeddings = true;  // GPT-2 always ties its output embedding
  spec->sliding_window.assign(spec->num_layers, 0);
  return absl::OkStatus();
}

LinearNames Linear(std::vector<std::string> weights, std::vector<std::string> biases = {}) {
  LinearNames l;
  for (auto& w : weights) l.weights.push_back({std::move(w), false});
  l.biases = std::move(biases);
  return l;
}

CheckpointNames LlamaNames(const ModelSpec& spec, const HasTensor&) {
  CheckpointNames n;
  n.token_embedding = "model.embed_tokens.weight";
  if (spec.final_norm) n.final_norm.weight = "model.norm.weight";
  // LayerNorm has a bias (TesseraForCausalLM; the HF families use RMSNorm).
  const bool norm_bias = spec.norm == NormKind::kLayerNorm;
  if (norm_bias && spec.final_norm) n.final_norm.bias = "model.norm.bias";
  if (!spec.tie_word_embeddings) n.lm_head = Linear({"lm_head.weight"});
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    const std::string a = p + "self_attn.";
    LayerNames layer;
    layer.attn_norm.weight = p + "input_layernorm.weight";
    layer.mlp_norm.weight = p + "post_attention_layernorm.weight";
    if (norm_bias) {
      layer.attn_norm.bias = p + "input_layernorm.bias";
      layer.mlp_norm.bias = p + "post_attention_layernorm.bias";
    }
    layer.qkv = Linear({a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"});
    if (spec.qkv_bias) layer.qkv.biases = {a + "q_proj.bias", a + "k_proj.bias", a + "v_proj.bias"};
    layer.o = Linear({a + "o_proj.weight"});
    if (spec.o_bias) layer.o.biases = {a + "o_proj.bias"};
    if (spec.is_moe()) {
      const std::string m = p + "block_sparse_moe.";
      layer.router = Linear({m + "gate.weight"});
      for (int e = 0; e < spec.num_experts; ++e) {
        const std::string x = absl::StrCat(m, "experts.", e, ".");
        layer.expert_gate_up.push_back(Linear({x + "w1.weight", x + "w3.weight"}));
        layer.expert_down.push_back(Linear({x + "w2.weight"}));
      }
    } else {
      const std::string m = p + "mlp.";
      // Gated: [gate | up]; plain (TesseraForCausalLM's mlp_type): up alone.
      const std::vector<std::string> in = spec.gated_mlp ? std::vector<std::string>{"gate_proj", "up_proj"}
                                                         : std::vector<std::string>{"up_proj"};
      for (const std::string& part : in) {
        layer.gate_up.weights.push_back({m + part + ".weight", false});
        if (spec.mlp_bias) layer.gate_up.biases.push_back(m + part + ".bias");
      }
      layer.down = Linear({m + "down_proj.weight"});
      if (spec.mlp_bias) layer.down.biases = {m + "down_proj.bias"};
    }
    n.layers.push_back(std::move(layer));
  }
  return n;
}

CheckpointNames Gpt2Names(const ModelSpec& spec, const HasTensor& has) {
  // save_pretrained writes "transformer.h.N..."; the original checkpoints "h.N...".
  const std::string root = has("transformer.wte.weight") ? "transformer." : "";
  auto conv1d = [](const std::string& prefix) {
    LinearNames l;
    l.weights.push_back({prefix + ".weight", /*transposed=*/true});
    l.biases.push_back(prefix + ".bias");
    return l;
  };
  CheckpointNames n;
  n.token_embedding = root + "wte.weight";
  n.position_embedding = root + "wpe.weight";
  n.final_norm = {root + "ln_f.weight", root + "ln_f.bias"};
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::string p = absl::StrCat(root, "h.", l, ".");
    LayerNames layer;
    layer.attn_norm = {p + "ln_1.weight", p + "ln_1.bias"};
    layer.mlp_norm = {p + "ln_2.weight", p + "ln_2.bias"};
    layer.qkv = conv1d(p + "attn.c_attn");
    layer.o = conv1d(p + "attn.c_proj");
    layer.gate_up = conv1d(p + "mlp.c_fc");
    layer.down = conv1d(p + "mlp.c_proj");
    n.layers.push_back(std::move(layer));
  }
  return n;
}

constexpr std::array<Family, 6> kFamilies = {{
    {"GPT2LMHeadModel", "gpt2", ParseGpt2, Gpt2Names},
    {"LlamaForCausalLM", "llama", ParseLlama, LlamaNames},
    {"MistralForCausalLM", "mistral", ParseMistral, LlamaNames},
    {"Qwen2ForCausalLM", "qwen2", ParseQwen2, LlamaNames},
    {"MixtralForCausalLM", "mixtral", ParseMixtral, LlamaNames},
    {"TesseraForCausalLM", "tessera", ParseTessera, LlamaNames},
}};

}  // namespace

const Family* FindFamily(std::string_view architecture) {
  for (const Family& f : kFamilies) {
    if (f.architecture == architecture) return &f;
  }
  return nullptr;
}

std::string KnownArchitectures() {
  std::vector<std::string> names;
  for (const Family& f : kFamilies) names.emplace_back(f.architecture);
  return absl::StrJoin(names, ", ");
}

}  // namespace tessera::models::internal
