#include "models/model_spec.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "models/internal/config_reader.h"
#include "models/internal/family.h"

namespace tessera::models {
namespace {

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("config.json: ", what));
}

absl::Status Validate(const ModelSpec& s) {
  if (s.vocab_size <= 0 || s.hidden_size <= 0 || s.num_layers <= 0 || s.num_heads <= 0 ||
      s.num_kv_heads <= 0 || s.head_dim <= 0 || s.intermediate_size <= 0 ||
      s.max_position_embeddings <= 0) {
    return Invalid("sizes (vocab, hidden, layers, heads, head_dim, intermediate, max positions) must be > 0");
  }
  if (s.num_heads % s.num_kv_heads != 0) {
    return Invalid(absl::StrCat("num_attention_heads (", s.num_heads,
                                ") must be a multiple of num_key_value_heads (", s.num_kv_heads, ")"));
  }
  if (s.num_heads / s.num_kv_heads > 64) return Invalid("more than 64 query heads per KV head");
  if (s.positions == PositionKind::kRope && s.head_dim % 2 != 0) return Invalid("head_dim must be even for RoPE");
  if (s.positions == PositionKind::kLearned && s.hidden_size != s.num_heads * s.head_dim) {
    return Invalid("hidden size must equal heads x head_dim");
  }
  return absl::OkStatus();
}

// `file`'s eos_token_id, an int or a list of ints (Llama-3-Instruct's generation_config
// lists <|eot_id|> next to <|end_of_text|>), added to the spec's stop ids.
absl::Status AddEosTokenIds(const nlohmann::json& c, const std::string& file, ModelSpec* spec) {
  if (!c.contains("eos_token_id") || c["eos_token_id"].is_null()) return absl::OkStatus();
  const auto& eos = c["eos_token_id"];
  constexpr int64_t kMaxId = std::numeric_limits<int32_t>::max();
  std::vector<nlohmann::json> items = eos.is_array() ? std::vector<nlohmann::json>(eos.begin(), eos.end())
                                                     : std::vector<nlohmann::json>{eos};
  if (!eos.is_array() && !eos.is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": eos_token_id must be an integer or a list of integers"));
  }
  for (const auto& item : items) {
    const std::optional<int64_t> id = JsonInt(item, 0, kMaxId);
    if (!id) return absl::InvalidArgumentError(absl::StrCat(file, ": eos_token_id holds ", item.dump(), ", not a token id"));
    if (std::find(spec->eos_token_ids.begin(), spec->eos_token_ids.end(), *id) == spec->eos_token_ids.end()) {
      spec->eos_token_ids.push_back(static_cast<int>(*id));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSpecialTokens(const nlohmann::json& c, ModelSpec* spec) {
  RETURN_IF_ERROR(AddEosTokenIds(c, "config.json", spec));
  ASSIGN_OR_RETURN(spec->bos_token_id, internal::ReadKeyOr<int>(c, "bos_token_id", -1));
  return absl::OkStatus();
}

// transformers writes torch_dtype (newer versions: dtype).
absl::Status ParseDtype(const nlohmann::json& c, ModelSpec* spec) {
  ASSIGN_OR_RETURN(const std::string dtype,
                   internal::ReadKeyOr<std::string>(c, c.contains("dtype") ? "dtype" : "torch_dtype", "float32"));
  spec->dtype = dtype == "bfloat16" ? KvDtype::kBf16 : dtype == "float16" ? KvDtype::kF16 : KvDtype::kF32;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelSpec> ParseModelSpec(const std::string& config_json) {
  nlohmann::json c = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (c.is_discarded() || !c.is_object()) return Invalid("not a JSON object");
  if (!c.contains("architectures") || !c["architectures"].is_array() || c["architectures"].empty() ||
      !c["architectures"][0].is_string()) {
    return Invalid("missing required key 'architectures' (a list naming the model class)");
  }
  ModelSpec spec;
  spec.architecture = c["architectures"][0].get<std::string>();
  const internal::Family* family = internal::FindFamily(spec.architecture);
  if (family == nullptr) {
    return Invalid(absl::StrCat("unsupported architecture '", spec.architecture,
                                "' (supported: ", internal::KnownArchitectures(), ")"));
  }
  spec.family = std::string(family->name);
  RETURN_IF_ERROR(family->parse_config(c, &spec));
  RETURN_IF_ERROR(ParseSpecialTokens(c, &spec));
  RETURN_IF_ERROR(ParseDtype(c, &spec));
  RETURN_IF_ERROR(Validate(spec));
  return spec;
}

absl::StatusOr<KvDtype> ResolveKvDtype(const std::string& flag, const ModelSpec& spec) {
  if (flag == "auto") return spec.dtype;
  KvDtype dtype;
  if (!ParseKvDtype(flag, &dtype)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown KV cache dtype '", flag, "' (choose auto, f32, bf16, f16, int8 or fp8_e4m3)"));
  }
  return dtype;
}

absl::StatusOr<ModelSpec> LoadModelSpec(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<ModelSpec> spec = ParseModelSpec(text.str());
  if (spec.ok()) {  // the generation config's stop ids count too
    std::ifstream generation(std::filesystem::path(model_dir) / "generation_config.json");
    const nlohmann::json g = generation ? nlohmann::json::parse(generation, nullptr, false) : nlohmann::json::object();
    if (g.is_discarded() || !g.is_object()) {
      spec = absl::InvalidArgumentError("generation_config.json is not a JSON object");
    } else if (absl::Status s = AddEosTokenIds(g, "generation_config.json", &*spec); !s.ok()) {
      spec = s;
    }
  }
  if (!spec.ok()) {
    return absl::Status(spec.status().code(), absl::StrCat(model_dir, ": ", spec.status().message()));
  }
  return spec;
}

}  // namespace tessera::models
