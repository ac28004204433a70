// config.json -> ModelSpec for every family, and clear errors for what is unsupported.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "models/model_spec.h"
#include "models/rope.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"

namespace tessera {
namespace {

using models::ParseModelSpec;
using nlohmann::json;

json LlamaConfig() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"vocab_size", 100},
              {"hidden_size", 64},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 4},
              {"num_key_value_heads", 2},
              {"intermediate_size", 128},
              {"max_position_embeddings", 256},
              {"rms_norm_eps", 1e-5},
              {"eos_token_id", 2}};
}

std::string Error(const json& config) {
  auto spec = ParseModelSpec(config.dump());
  EXPECT_FALSE(spec.ok());
  if (spec.ok()) return "";
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(spec.status().message());
}

TEST(ConfigTest, LlamaDefaults) {
  auto spec = ParseModelSpec(LlamaConfig().dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->family, "llama");
  EXPECT_EQ(spec->head_dim, 16);
  EXPECT_EQ(spec->num_kv_heads, 2);
  EXPECT_EQ(spec->norm, models::NormKind::kRmsNorm);
  EXPECT_TRUE(spec->gated_mlp);
  EXPECT_FALSE(spec->qkv_bias);
  EXPECT_EQ(spec->rope.scaling, models::RopeScaling::kNone);
  EXPECT_EQ(spec->sliding_window, (std::vector<int>{0, 0}));
  EXPECT_EQ(spec->eos_token_ids, (std::vector<int>{2}));
}

TEST(ConfigTest, HeadDimKeyIsAuthoritative) {
  json c = LlamaConfig();
  c["head_dim"] = 32;
  EXPECT_EQ(ParseModelSpec(c.dump())->head_dim, 32);
}

TEST(ConfigTest, UnknownArchitectureNamesTheSupportedOnes) {
  json c = LlamaConfig();
  c["architectures"] = {"FalconForCausalLM"};
  const std::string e = Error(c);
  EXPECT_NE(e.find("unsupported architecture 'FalconForCausalLM'"), std::string::npos) << e;
  EXPECT_NE(e.find("MixtralForCausalLM"), std::string::npos) << e;
}

TEST(ConfigTest, MissingKeyIsNamed) {
  json c = LlamaConfig();
  c.erase("hidden_size");
  EXPECT_NE(Error(c).find("missing required key 'hidden_size'"), std::string::npos);
  c = LlamaConfig();
  c.erase("architectures");
  EXPECT_NE(Error(c).find("'architectures'"), std::string::npos);
}

TEST(ConfigTest, WrongTypeIsNamed) {
  json c = LlamaConfig();
  c["num_hidden_layers"] = "two";
  EXPECT_NE(Error(c).find("'num_hidden_layers' has the wrong type"), std::string::npos);
}

TEST(ConfigTest, InconsistentHeadsAreRejected) {
  json c = LlamaConfig();
  c["num_key_value_heads"] = 3;
  EXPECT_NE(Error(c).find("multiple of num_key_value_heads"), std::string::npos);
}

// Reproducers from fuzzing (tests/data/repro/README.md): sizes are checked as they are
// read, before any of them sizes a vector or enters a product.
TEST(ConfigTest, OutOfRangeSizesAreNamedBeforeTheySizeAnything) {
  const std::string repro = testing::TestDataDir() + "/repro/";
  for (const auto& [file, key] : {std::pair{"config_negative_layers.json", "num_hidden_layers"},
                                  std::pair{"config_huge_layers.json", "num_hidden_layers"},
                                  std::pair{"config_gpt2_overflow.json", "n_embd"}}) {
    std::ifstream in(repro + file);
    ASSERT_TRUE(in) << file;
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto spec = ParseModelSpec(text);
    ASSERT_FALSE(spec.ok()) << file;
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(spec.status().message().find(key), std::string::npos) << spec.status();
  }
  // Floats and huge values where integers belong.
  for (const json& bad : {json(2.5), json(1e10), json(-4), json(0), json(18446744073709551615ull)}) {
    json c = LlamaConfig();
    c["num_attention_heads"] = bad;
    EXPECT_NE(Error(c).find("num_attention_heads"), std::string::npos) << bad.dump();
  }
  json c = LlamaConfig();
  c["eos_token_id"] = 1e10;
  EXPECT_NE(Error(c).find("eos_token_id"), std::string::npos);
  c = LlamaConfig();
  c["bos_token_id"] = 3.5;
  EXPECT_NE(Error(c).find("bos_token_id"), std::string::npos);
}

TEST(ConfigTest, NotJson) { EXPECT_NE(Error(json("x")).find("not a JSON object"), std::string::npos); }

TEST(ConfigTest, RopeScalingVariants) {
  json c = LlamaConfig();
  c["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  EXPECT_EQ(ParseModelSpec(c.dump())->rope.scaling, models::RopeScaling::kLinear);
  c["rope_scaling"] = {{"rope_type", "dynamic"}, {"factor", 2.0}};
  EXPECT_EQ(ParseModelSpec(c.dump())->rope.scaling, models::RopeScaling::kDynamic);
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  EXPECT_EQ(ParseModelSpec(c.dump())->rope.scaling, models::RopeScaling::kLlama3);
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  auto yarn = ParseModelSpec(c.dump());
  ASSERT_TRUE(yarn.ok());
  EXPECT_NEAR(yarn->rope.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-12);
  c["rope_scaling"] = {{"type", "ntk"}, {"factor", 4.0}};
  EXPECT_EQ(ParseModelSpec(c.dump())->rope.scaling, models::RopeScaling::kNtk);
  c["rope_scaling"] = {{"rope_type", "longrope"}, {"factor", 4.0}};
  EXPECT_NE(Error(c).find("unsupported rope_scaling type 'longrope'"), std::string::npos);
  c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_NE(Error(c).find("low_freq_factor"), std::string::npos);
}

// Static NTK-aware scaling (base x a^(d/(d-2))) keeps the fastest rotation and slows
// the slowest by exactly the factor: it extrapolates high frequencies and interpolates
// low ones, the point of the method.
TEST(RopeTest, StaticNtkScalesTheBaseAndInterpolatesTheLowestFrequency) {
  models::ModelSpec spec = *ParseModelSpec(LlamaConfig().dump());
  spec.head_dim = 64;
  const models::RotaryEmbedding plain(spec);
  spec.rope.scaling = models::RopeScaling::kNtk;
  spec.rope.factor = 4.0;
  const models::RotaryEmbedding ntk(spec);
  std::vector<float> scratch;
  const std::vector<float>& f = ntk.InverseFrequencies(1, &scratch);
  const std::vector<float> original = plain.InverseFrequencies(1, &scratch);
  ASSERT_EQ(f.size(), 32u);
  const double base = spec.rope.theta * std::pow(4.0, 64.0 / 62.0);
  for (int j = 0; j < 32; ++j) EXPECT_NEAR(f[j], std::pow(base, -2.0 * j / 64), 1e-6 * f[j]) << j;
  EXPECT_EQ(f[0], original[0]);
  EXPECT_NEAR(f[31], original[31] / 4.0, 1e-5 * f[31]);
  // The same at every length (unlike dynamic NTK).
  EXPECT_EQ(ntk.InverseFrequencies(1 << 20, &scratch), f);
  EXPECT_EQ(ntk.attention_scale(), 1.0f);
}

TEST(ConfigTest, MistralWindowAppliesToEveryLayer) {
  json c = LlamaConfig();
  c["architectures"] = {"MistralForCausalLM"};
  c["sliding_window"] = 4096;
  EXPECT_EQ(ParseModelSpec(c.dump())->sliding_window, (std::vector<int>{4096, 4096}));
  c["sliding_window"] = nullptr;
  EXPECT_EQ(ParseModelSpec(c.dump())->sliding_window, (std::vector<int>{0, 0}));
}

TEST(ConfigTest, Qwen2WindowOnlyWhenEnabledAndFromMaxWindowLayers) {
  json c = LlamaConfig();
  c["architectures"] = {"Qwen2ForCausalLM"};
  c["sliding_window"] = 32;
  c["use_sliding_window"] = false;
  auto spec = ParseModelSpec(c.dump());
  EXPECT_TRUE(spec->qkv_bias);
  EXPECT_EQ(spec->sliding_window, (std::vector<int>{0, 0}));
  c["use_sliding_window"] = true;
  c["max_window_layers"] = 1;
  EXPECT_EQ(ParseModelSpec(c.dump())->sliding_window, (std::vector<int>{0, 32}));
}

TEST(ConfigTest, MixtralExperts) {
  json c = LlamaConfig();
  c["architectures"] = {"MixtralForCausalLM"};
  c["num_local_experts"] = 8;
  c["num_experts_per_tok"] = 2;
  auto spec = ParseModelSpec(c.dump());
  ASSERT_TRUE(spec.ok());
  EXPECT_TRUE(spec->is_moe());
  EXPECT_EQ(spec->experts_per_token, 2);
  c["num_experts_per_tok"] = 9;
  EXPECT_NE(Error(c).find("num_experts_per_tok"), std::string::npos);
}

// Every switch of TesseraForCausalLM lands in the spec, MoE keys beside the others
// (they must not reset what the family set: norm kind, eps, window).
TEST(ConfigTest, TesseraSwitches) {
  json c = LlamaConfig();
  c["architectures"] = {"TesseraForCausalLM"};
  c["norm_type"] = "layer_norm";
  c["norm_eps"] = 1e-3;
  c["norm_position"] = "post";
  c["deepnorm_alpha"] = 2.0;
  c["mlp_type"] = "plain";
  c["sliding_window"] = 32;
  c["num_local_experts"] = 4;
  c["num_experts_per_tok"] = 2;
  c["norm_topk_prob"] = false;
  auto spec = ParseModelSpec(c.dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->family, "tessera");
  EXPECT_EQ(spec->norm, models::NormKind::kLayerNorm);
  EXPECT_FLOAT_EQ(spec->norm_eps, 1e-3f);
  EXPECT_EQ(spec->norm_position, models::NormPosition::kPost);
  EXPECT_FALSE(spec->final_norm);
  EXPECT_FLOAT_EQ(spec->residual_scale, 2.0f);
  EXPECT_FALSE(spec->gated_mlp);
  EXPECT_EQ(spec->sliding_window, (std::vector<int>{32, 32}));
  EXPECT_EQ(spec->num_experts, 4);
  EXPECT_FALSE(spec->moe_renormalize);

  c["norm_position"] = "pre";  // DeepNorm is a post-norm
  EXPECT_NE(Error(c).find("deepnorm_alpha"), std::string::npos);
}

TEST(ConfigTest, Gpt2) {
  json c = {{"architectures", {"GPT2LMHeadModel"}}, {"vocab_size", 50}, {"n_embd", 32}, {"n_layer", 1},
            {"n_head", 4}, {"n_positions", 64}, {"n_inner", nullptr}, {"eos_token_id", {7, 8}}};
  auto spec = ParseModelSpec(c.dump());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->intermediate_size, 128);
  EXPECT_EQ(spec->norm, models::NormKind::kLayerNorm);
  EXPECT_EQ(spec->positions, models::PositionKind::kLearned);
  EXPECT_EQ(spec->activation, kernels::Activation::kGeluTanh);
  EXPECT_TRUE(spec->tie_word_embeddings);
  EXPECT_EQ(spec->eos_token_ids, (std::vector<int>{7, 8}));
  c["activation_function"] = "mish";
  EXPECT_NE(Error(c).find("unsupported activation 'mish'"), std::string::npos);
}

}  // namespace
}  // namespace tessera

namespace tessera {
namespace {

// generation_config.json's eos_token_id (an int or a list, as Llama-3-Instruct's lists
// <|eot_id|>) adds to config.json's stop ids; a bad one is named.
TEST(ConfigTest, GenerationConfigAddsStopIds) {
  const std::string dir = ::testing::TempDir() + "/generation_config_test";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json") << LlamaConfig().dump();
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": [2, 7, 9]})";
  auto spec = models::LoadModelSpec(dir);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->eos_token_ids, (std::vector<int>{2, 7, 9}));
  std::ofstream(dir + "/generation_config.json") << R"({"eos_token_id": 2.5})";
  auto bad = models::LoadModelSpec(dir);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("generation_config.json"), std::string::npos) << bad.status();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera
