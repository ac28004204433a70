#include "bench/synthetic_model.h"

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "common/bf16.h"

namespace tessera::bench {

models::ModelSpec TinyLlamaSpec() {
  models::ModelSpec s;
  s.architecture = "LlamaForCausalLM";
  s.family = "llama";
  s.vocab_size = 32000;
  s.hidden_size = 2048;
  s.num_layers = 22;
  s.num_heads = 32;
  s.num_kv_heads = 4;
  s.head_dim = 64;
  s.intermediate_size = 5632;
  s.max_position_embeddings = 2048;
  s.norm_eps = 1e-5f;
  s.sliding_window.assign(s.num_layers, 0);
  return s;
}

models::ModelSpec SmallMixtralSpec() {
  models::ModelSpec s = TinyLlamaSpec();
  s.architecture = "MixtralForCausalLM";
  s.family = "mixtral";
  s.hidden_size = 1024;
  s.num_layers = 8;
  s.num_heads = 16;
  s.num_kv_heads = 8;
  s.head_dim = 64;
  s.intermediate_size = 3584;
  s.num_experts = 8;
  s.experts_per_token = 2;
  s.sliding_window.assign(s.num_layers, 0);
  return s;
}

SyntheticLlama::SyntheticLlama(const models::ModelSpec& spec, uint64_t seed, DType dtype)
    : state_(seed * 0x9e3779b97f4a7c15ull + 1), dtype_(dtype) {
  const int64_t h = spec.hidden_size, q = spec.q_size(), kv = spec.kv_size(), inner = spec.intermediate_size;
  Add("model.embed_tokens.weight", {spec.vocab_size, h});
  Add("lm_head.weight", {spec.vocab_size, h});
  Add("model.norm.weight", {h}, true);
  for (int l = 0; l < spec.num_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    Add(p + "input_layernorm.weight", {h}, true);
    Add(p + "post_attention_layernorm.weight", {h}, true);
    Add(p + "self_attn.q_proj.weight", {q, h});
    Add(p + "self_attn.k_proj.weight", {kv, h});
    Add(p + "self_attn.v_proj.weight", {kv, h});
    Add(p + "self_attn.o_proj.weight", {h, q});
    if (spec.is_moe()) {
      const std::string m = p + "block_sparse_moe.";
      Add(m + "gate.weight", {spec.num_experts, h});
      for (int e = 0; e < spec.num_experts; ++e) {
        const std::string x = absl::StrCat(m, "experts.", e, ".");
        Add(x + "w1.weight", {inner, h});
        Add(x + "w3.weight", {inner, h});
        Add(x + "w2.weight", {h, inner});
      }
    } else {
      Add(p + "mlp.gate_proj.weight", {inner, h});
      Add(p + "mlp.up_proj.weight", {inner, h});
      Add(p + "mlp.down_proj.weight", {h, inner});
    }
  }
}

void SyntheticLlama::Add(const std::string& name, std::vector<int64_t> shape, bool ones) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<uint16_t>& data = storage_[name];
  data.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    if (ones) {
      data[i] = dtype_ == DType::kF16 ? FloatToF16(1.0f) : FloatToBf16(1.0f);
      continue;
    }
    // xorshift64*: cheap enough for a billion values; a sum of two uniforms is close
    // enough to a normal for timing purposes.
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t r = state_ * 0x2545f4914f6cdd1dull;
    const float u = static_cast<float>(r >> 40) / 16777216.0f + static_cast<float>((r >> 16) & 0xffffff) / 16777216.0f;
    const float value = (u - 1.0f) * 0.05f;
    data[i] = dtype_ == DType::kF16 ? FloatToF16(value) : FloatToBf16(value);
  }
  models::TensorView view;
  view.dtype = std::string(DTypeName(dtype_));
  view.shape = std::move(shape);
  view.data = reinterpret_cast<const uint8_t*>(data.data());
  view.nbytes = data.size() * sizeof(uint16_t);
  views_[name] = view;
}

absl::Status SyntheticLlama::WriteCheckpoint(const models::ModelSpec& spec, const std::string& dir) const {
  std::filesystem::create_directories(dir);
  nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                           {"vocab_size", spec.vocab_size},
                           {"hidden_size", spec.hidden_size},
                           {"num_hidden_layers", spec.num_layers},
                           {"num_attention_heads", spec.num_heads},
                           {"num_key_value_heads", spec.num_kv_heads},
                           {"intermediate_size", spec.intermediate_size},
                           {"max_position_embeddings", spec.max_position_embeddings},
                           {"rms_norm_eps", spec.norm_eps},
                           {"rope_theta", spec.rope.theta},
                           {"hidden_act", "silu"},
                           {"tie_word_embeddings", false},
                           {"eos_token_id", 2},
                           {"torch_dtype", dtype_ == DType::kF16 ? "float16" : "bfloat16"}};
  std::ofstream(dir + "/config.json") << config.dump(2) << "\n";
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  uint64_t offset = 0;
  for (const auto& [name, view] : views_) {
    header[name] = {{"dtype", view.dtype}, {"shape", view.shape}, {"data_offsets", {offset, offset + view.nbytes}}};
    offset += view.nbytes;
  }
  std::string text = header.dump();
  while (text.size() % 8) text.push_back(' ');
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  const uint64_t n = text.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(text.data(), static_cast<std::streamsize>(n));
  for (const auto& [name, view] : views_) {
    out.write(reinterpret_cast<const char*>(view.data), static_cast<std::streamsize>(view.nbytes));
  }
  if (!out) return absl::InternalError("cannot write " + dir + "/model.safetensors");
  return absl::OkStatus();
}

const models::TensorView* SyntheticLlama::Find(const std::string& name) const {
  auto it = views_.find(name);
  return it == views_.end() ? nullptr : &it->second;
}

}  // namespace tessera::bench
