#include "tokenizer/tokenizer.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/json_int.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/added_vocabulary.h"
#include "tokenizer/internal/bpe.h"
#include "tokenizer/internal/components.h"
#include "tokenizer/internal/utf8.h"

namespace tessera::tokenizer {

using internal::AddedVocabulary;
using internal::BpeModel;
using nlohmann::json;

struct Tokenizer::Impl {
  std::unique_ptr<internal::Normalizer> normalizer;        // may be null
  std::unique_ptr<internal::PreTokenizer> pre_tokenizer;   // may be null
  std::unique_ptr<BpeModel> model;
  std::unique_ptr<internal::Decoder> decoder;              // may be null
  AddedVocabulary added;
  // add_special_tokens template: ids to emit, with -1 where the sequence goes.
  std::vector<int32_t> single_template = {-1};

  absl::Status ParsePostProcessor(const json& j);
};

namespace {

absl::Status Unsupported(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", what));
}

absl::StatusOr<std::string> ReadFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

absl::Status Tokenizer::Impl::ParsePostProcessor(const json& j) {
  if (j.is_null()) return absl::OkStatus();
  const std::string type = j.value("type", "");
  if (type == "ByteLevel") return absl::OkStatus();  // only adjusts offsets
  if (type == "Sequence") {
    for (const auto& p : j.value("processors", json::array())) RETURN_IF_ERROR(ParsePostProcessor(p));
    return absl::OkStatus();
  }
  if (type != "TemplateProcessing") return Unsupported(absl::StrCat("unsupported post_processor type '", type, "'"));
  if (!j.contains("single") || !j["single"].is_array()) return Unsupported("TemplateProcessing needs 'single'");
  const json special = j.value("special_tokens", json::object());
  single_template.clear();
  for (const auto& item : j["single"]) {
    if (item.contains("Sequence")) {
      single_template.push_back(-1);
    } else if (item.contains("SpecialToken") && item["SpecialToken"].contains("id")) {
      const std::string name = item["SpecialToken"]["id"].get<std::string>();
      if (!special.contains(name) || !special[name].contains("ids") || !special[name]["ids"].is_array()) {
        return Unsupported(absl::StrCat("TemplateProcessing names unknown special token '", name, "'"));
      }
      for (const auto& id : special[name]["ids"]) {
        const std::optional<int64_t> checked = JsonInt(id, 0, internal::kMaxTokenId);
        if (!checked) {
          return absl::InvalidArgumentError(
              absl::StrCat("tokenizer.json: TemplateProcessing token '", name, "' has id ", id.dump(), ", not a token id"));
        }
        single_template.push_back(static_cast<int32_t>(*checked));
      }
    } else {
      return Unsupported("TemplateProcessing item is neither Sequence nor SpecialToken");
    }
  }
  return absl::OkStatus();
}

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::~Tokenizer() = default;

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::Load(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(std::filesystem::path(dir) / "tokenizer.json"));
  absl::StatusOr<std::unique_ptr<Tokenizer>> t = FromJson(text);
  if (!t.ok()) return absl::Status(t.status().code(), absl::StrCat(dir, ": ", t.status().message()));
  return t;
}

absl::StatusOr<std::unique_ptr<Tokenizer>> Tokenizer::FromJson(std::string_view text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Unsupported("not a JSON object");
  auto impl = std::make_unique<Impl>();
  // nlohmann throws on a value of the wrong type; turn that into a status here.
  try {
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      ASSIGN_OR_RETURN(impl->normalizer, internal::Normalizer::FromJson(j["normalizer"]));
    }
    if (j.contains("pre_tokenizer") && !j["pre_tokenizer"].is_null()) {
      ASSIGN_OR_RETURN(impl->pre_tokenizer, internal::PreTokenizer::FromJson(j["pre_tokenizer"]));
    }
    if (!j.contains("model")) return Unsupported("missing 'model'");
    ASSIGN_OR_RETURN(impl->model, BpeModel::FromJson(j["model"]));
    if (j.contains("decoder") && !j["decoder"].is_null()) {
      ASSIGN_OR_RETURN(impl->decoder, internal::Decoder::FromJson(j["decoder"]));
    }
    ASSIGN_OR_RETURN(impl->added, AddedVocabulary::FromJson(j.value("added_tokens", json::array())));
    RETURN_IF_ERROR(impl->ParsePostProcessor(j.value("post_processor", json())));
  } catch (const json::exception& e) {
    return Unsupported(absl::StrCat("malformed field: ", e.what()));
  }
  return std::unique_ptr<Tokenizer>(new Tokenizer(std::move(impl)));
}

absl::StatusOr<std::vector<int32_t>> Tokenizer::Encode(std::string_view text, bool add_special_tokens) const {
  if (!internal::IsValidUtf8(text)) return absl::InvalidArgumentError("text is not valid UTF-8");
  std::vector<int32_t> ids;
  std::vector<std::string> words;
  for (const internal::Segment& seg : impl_->added.Split(text)) {
    if (seg.added_id >= 0) {
      ids.push_back(seg.added_id);
      continue;
    }
    std::string normalized(seg.text);
    if (impl_->normalizer) impl_->normalizer->Normalize(&normalized);
    words.assign(1, std::move(normalized));
    if (impl_->pre_tokenizer) impl_->pre_tokenizer->Split(&words);
    for (const std::string& w : words) impl_->model->EncodeWord(w, &ids);
  }
  if (!add_special_tokens) return ids;
  std::vector<int32_t> out;
  out.reserve(ids.size() + impl_->single_template.size());
  for (int32_t t : impl_->single_template) {
    if (t < 0) {
      out.insert(out.end(), ids.begin(), ids.end());
    } else {
      out.push_back(t);
    }
  }
  return out;
}

absl::StatusOr<std::string> Tokenizer::Decode(std::span<const int32_t> ids, bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (const internal::AddedToken* added = impl_->added.Find(id)) {
      if (!(skip_special_tokens && added->special)) tokens.push_back(added->content);
      continue;
    }
    const std::string* token = impl_->model->IdToToken(id);
    if (token == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size(), ")"));
    }
    tokens.push_back(*token);
  }
  if (impl_->decoder == nullptr) return absl::StrJoin(tokens, " ");
  impl_->decoder->Decode(&tokens);
  return absl::StrJoin(tokens, "");
}

int32_t Tokenizer::vocab_size() const { return std::max(impl_->model->size(), impl_->added.max_id() + 1); }

bool Tokenizer::IsByteToken(int32_t id) const {
  if (impl_->added.Find(id) != nullptr) return false;
  const std::string* token = impl_->model->IdToToken(id);
  int byte;
  return token != nullptr && internal::ParseByteToken(*token, &byte);
}

std::optional<int32_t> Tokenizer::TokenToId(std::string_view token) const {
  if (const internal::AddedToken* added = impl_->added.Find(token)) return added->id;
  return impl_->model->TokenToId(token);
}

bool Tokenizer::IsSpecial(int32_t id) const {
  const internal::AddedToken* added = impl_->added.Find(id);
  return added != nullptr && added->special;
}

}  // namespace tessera::tokenizer
