#include "tokenizer/internal/added_vocabulary.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/str_cat.h"
#include "common/json_int.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/components.h"
#include "tokenizer/internal/utf8.h"

namespace tessera::tokenizer::internal {
namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
bool IsWordByte(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u >= 0x80 || std::isalnum(u) || c == '_';
}

}  // namespace

absl::StatusOr<AddedVocabulary> AddedVocabulary::FromJson(const nlohmann::json& list) {
  AddedVocabulary v;
  if (list.is_null()) return v;
  if (!list.is_array()) return absl::InvalidArgumentError("tokenizer.json: added_tokens is not a list");
  for (const auto& t : list) {
    const std::optional<int64_t> id = t.is_object() && t.contains("id") ? JsonInt(t["id"], 0, kMaxTokenId) : std::nullopt;
    if (!id || !t.contains("content") || !t["content"].is_string() || t["content"].get<std::string>().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer.json: an added token needs an id in [0, ", kMaxTokenId, "] and a non-empty content"));
    }
    AddedToken a;
    a.id = static_cast<int32_t>(*id);
    a.content = t["content"].get<std::string>();
    a.single_word = t.value("single_word", false);
    a.lstrip = t.value("lstrip", false);
    a.rstrip = t.value("rstrip", false);
    a.special = t.value("special", false);
    v.max_id_ = std::max(v.max_id_, a.id);
    v.by_id_[a.id] = v.tokens_.size();
    v.by_content_[a.content] = v.tokens_.size();
    v.tokens_.push_back(std::move(a));
  }
  for (size_t i = 0; i < v.tokens_.size(); ++i) {
    v.by_first_byte_[static_cast<unsigned char>(v.tokens_[i].content[0])].push_back(i);
  }
  for (auto& list_for_byte : v.by_first_byte_) {
    std::stable_sort(list_for_byte.begin(), list_for_byte.end(),
                     [&](size_t a, size_t b) { return v.tokens_[a].content.size() > v.tokens_[b].content.size(); });
  }
  return v;
}

std::vector<Segment> AddedVocabulary::Split(std::string_view text) const {
  std::vector<Segment> out;
  size_t plain_start = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken* hit = nullptr;
    for (size_t idx : by_first_byte_[static_cast<unsigned char>(text[i])]) {
      const AddedToken& t = tokens_[idx];
      if (text.compare(i, t.content.size(), t.content) != 0) continue;
      if (t.single_word) {
        const size_t end = i + t.content.size();
        if ((i > 0 && IsWordByte(text[i - 1])) || (end < text.size() && IsWordByte(text[end]))) continue;
      }
      hit = &t;
      break;
    }
    if (hit == nullptr) {
      ++i;
      continue;
    }
    size_t plain_end = i;
    if (hit->lstrip) {
      while (plain_end > plain_start && IsSpace(text[plain_end - 1])) --plain_end;
    }
    if (plain_end > plain_start) out.push_back({text.substr(plain_start, plain_end - plain_start), -1});
    out.push_back({text.substr(i, hit->content.size()), hit->id});
    i += hit->content.size();
    if (hit->rstrip) {
      while (i < text.size() && IsSpace(text[i])) ++i;
    }
    plain_start = i;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
  return out;
}

const AddedToken* AddedVocabulary::Find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

const AddedToken* AddedVocabulary::Find(std::string_view content) const {
  auto it = by_content_.find(AsAbsl(content));
  return it == by_content_.end() ? nullptr : &tokens_[it->second];
}

}  // namespace tessera::tokenizer::internal
