// Normalizers: Sequence, NFC / NFD / NFKC / NFKD (utf8proc), Prepend, Replace,
// Lowercase, Strip.
#include <utf8proc.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/components.h"

namespace tessera::tokenizer::internal {
namespace {

using nlohmann::json;

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> steps) : steps_(std::move(steps)) {}
  void Normalize(std::string* text) const override {
    for (const auto& s : steps_) s->Normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> steps_;
};

// Unicode normalization forms through utf8proc (input is valid UTF-8 by contract).
class UnicodeNormalizer : public Normalizer {
 public:
  explicit UnicodeNormalizer(utf8proc_option_t options) : options_(options) {}
  void Normalize(std::string* text) const override {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n =
        utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text->data()),
                     static_cast<utf8proc_ssize_t>(text->size()), &out, options_);
    if (n >= 0) text->assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    std::free(out);
  }

 private:
  utf8proc_option_t options_;
};

// Prepends a string to non-empty text (SentencePiece's "▁" before the first word).
class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void Normalize(std::string* text) const override {
    if (!text->empty()) text->insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void Normalize(std::string* text) const override { absl::StrReplaceAll({{from_, to_}}, text); }

 private:
  std::string from_, to_;
};

class LowercaseNormalizer : public Normalizer {
 public:
  void Normalize(std::string* text) const override {
    utf8proc_uint8_t* out = nullptr;
    const utf8proc_ssize_t n = utf8proc_map_custom(
        reinterpret_cast<const utf8proc_uint8_t*>(text->data()), static_cast<utf8proc_ssize_t>(text->size()), &out,
        UTF8PROC_STABLE, [](utf8proc_int32_t c, void*) { return utf8proc_tolower(c); }, nullptr);
    if (n >= 0) text->assign(reinterpret_cast<char*>(out), static_cast<size_t>(n));
    std::free(out);
  }
};

absl::StatusOr<std::string> StringPattern(const json& j, const std::string& where) {
  if (j.contains("pattern") && j["pattern"].is_object() && j["pattern"].contains("String") &&
      j["pattern"]["String"].is_string()) {
    return j["pattern"]["String"].get<std::string>();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer.json: ", where, " supports only {\"String\": ...} patterns"));
}

absl::StatusOr<std::string> StringField(const json& j, const std::string& key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: ", where, " needs a string '", key, "'"));
  }
  return j[key].get<std::string>();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> Normalizer::FromJson(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: normalizer without a type");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("normalizers") || !j["normalizers"].is_array()) {
      return absl::InvalidArgumentError("tokenizer.json: Sequence normalizer needs a 'normalizers' list");
    }
    std::vector<std::unique_ptr<Normalizer>> steps;
    for (const auto& step : j["normalizers"]) {
      ASSIGN_OR_RETURN(auto n, FromJson(step));
      steps.push_back(std::move(n));
    }
    return std::make_unique<SequenceNormalizer>(std::move(steps));
  }
  const auto stable = static_cast<utf8proc_option_t>(UTF8PROC_STABLE);
  if (type == "NFC") return std::make_unique<UnicodeNormalizer>(static_cast<utf8proc_option_t>(stable | UTF8PROC_COMPOSE));
  if (type == "NFD") return std::make_unique<UnicodeNormalizer>(static_cast<utf8proc_option_t>(stable | UTF8PROC_DECOMPOSE));
  if (type == "NFKC") {
    return std::make_unique<UnicodeNormalizer>(static_cast<utf8proc_option_t>(stable | UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
  }
  if (type == "NFKD") {
    return std::make_unique<UnicodeNormalizer>(static_cast<utf8proc_option_t>(stable | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT));
  }
  if (type == "Lowercase") return std::make_unique<LowercaseNormalizer>();
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prefix, StringField(j, "prepend", "Prepend normalizer"));
    return std::make_unique<PrependNormalizer>(std::move(prefix));
  }
  if (type == "Replace") {
    ASSIGN_OR_RETURN(std::string from, StringPattern(j, "Replace normalizer"));
    ASSIGN_OR_RETURN(std::string to, StringField(j, "content", "Replace normalizer"));
    return std::make_unique<ReplaceNormalizer>(std::move(from), std::move(to));
  }
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unsupported normalizer type '", type, "'"));
}

}  // namespace tessera::tokenizer::internal
