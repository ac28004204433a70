#include "tokenizer/internal/bpe.h"

#include <queue>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/json_int.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/components.h"
#include "tokenizer/internal/utf8.h"

namespace tessera::tokenizer::internal {
namespace {
constexpr std::string_view kMetaspace = "\xe2\x96\x81";  // U+2581, SentencePiece's word marker

// Whether the marker at byte `pos` of `text` directly follows another marker (false
// when fewer bytes than a marker precede it: "a▁" has its marker at byte 1).
bool FollowsMetaspace(std::string_view text, size_t pos) {
  return pos >= kMetaspace.size() && text.compare(pos - kMetaspace.size(), kMetaspace.size(), kMetaspace) == 0;
}
}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::FromJson(const nlohmann::json& m) {
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: model: ", what)); };
  if (!m.is_object() || m.value("type", "BPE") != "BPE") {
    return bad(absl::StrCat("unsupported model type '", m.is_object() ? m.value("type", "") : "", "' (only BPE)"));
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(key) && m[key].is_string() && !m[key].get<std::string>().empty()) {
      return bad(absl::StrCat("non-empty ", key, " is not supported"));
    }
  }
  if (m.contains("dropout") && m["dropout"].is_number() && m["dropout"].get<double>() > 0) {
    return bad("BPE dropout is not supported (it makes tokenization random)");
  }
  if (!m.contains("vocab") || !m["vocab"].is_object()) return bad("missing vocab object");
  if (!m.contains("merges") || !m["merges"].is_array()) return bad("missing merges list");

  auto model = std::unique_ptr<BpeModel>(new BpeModel());
  for (const auto& [token, id] : m["vocab"].items()) {
    const std::optional<int64_t> checked = JsonInt(id, 0, kMaxTokenId);
    if (!checked) return bad(absl::StrCat("bad id for token ", token));
    const auto i = static_cast<int32_t>(*checked);
    if (static_cast<size_t>(i) >= model->id_to_token_.size()) model->id_to_token_.resize(i + 1);
    model->id_to_token_[i] = token;
    model->vocab_[token] = i;
  }
  int32_t rank = 0;
  for (const auto& merge : m["merges"]) {
    std::string left, right;
    if (merge.is_string()) {  // "a b"
      const std::string s = merge.get<std::string>();
      const size_t space = s.find(' ', 1);
      if (space == std::string::npos) return bad(absl::StrCat("merge '", s, "' is not two tokens"));
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string()) {
      left = merge[0].get<std::string>();
      right = merge[1].get<std::string>();
    } else {
      return bad("a merge is neither \"a b\" nor [a, b]");
    }
    auto l = model->vocab_.find(left), r = model->vocab_.find(right), merged = model->vocab_.find(left + right);
    if (l == model->vocab_.end() || r == model->vocab_.end() || merged == model->vocab_.end()) {
      return bad(absl::StrCat("merge '", left, " ", right, "' uses tokens missing from the vocab"));
    }
    model->merges_.try_emplace(PairKey(l->second, r->second), Merge{rank++, merged->second});
  }
  if (m.contains("unk_token") && m["unk_token"].is_string()) {
    auto it = model->vocab_.find(m["unk_token"].get<std::string>());
    if (it == model->vocab_.end()) return bad("unk_token is not in the vocab");
    model->unk_id_ = it->second;
  }
  model->fuse_unk_ = m.value("fuse_unk", false);
  model->byte_fallback_ = m.value("byte_fallback", false);
  model->ignore_merges_ = m.value("ignore_merges", false);
  model->words_start_at_metaspace_ = true;
  for (const auto& [token, id] : model->vocab_) {
    for (size_t pos = token.find(kMetaspace, 1); pos != std::string::npos; pos = token.find(kMetaspace, pos + 1)) {
      if (!FollowsMetaspace(token, pos)) {
        model->words_start_at_metaspace_ = false;
      }
    }
  }
  for (int b = 0; b < 256; ++b) {
    auto it = model->vocab_.find(absl::StrFormat("<0x%02X>", b));
    model->byte_ids_[b] = it == model->vocab_.end() ? -1 : it->second;
  }
  return model;
}

std::optional<int32_t> BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AsAbsl(token));
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || id >= size() || id_to_token_[id].empty()) return nullptr;
  return &id_to_token_[id];
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int32_t>* ids) const {
  if (!words_start_at_metaspace_ || word.size() <= kMaxCachedWordBytes) {
    EncodeCached(word, ids);
    return;
  }
  // Split before every marker that follows another character ("▁▁x" stays whole).
  size_t start = 0;
  for (size_t pos = word.find(kMetaspace, 1); pos != std::string_view::npos; pos = word.find(kMetaspace, pos + 1)) {
    if (FollowsMetaspace(word, pos)) continue;
    EncodeCached(word.substr(start, pos - start), ids);
    start = pos;
  }
  EncodeCached(word.substr(start), ids);
}

void BpeModel::EncodeCached(std::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (auto it = vocab_.find(AsAbsl(word)); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (auto it = cache_.find(AsAbsl(word)); it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = ids->size();
  EncodeUncached(word, ids);
  if (cacheable) {
    absl::MutexLock lock(&cache_mu_);
    if (cache_.size() >= kCacheCapacity) cache_.clear();
    cache_.emplace(word, std::vector<int32_t>(ids->begin() + static_cast<std::ptrdiff_t>(first), ids->end()));
  }
}

// Splits the word into characters (or their bytes, or the unknown token), then applies
// the lowest-ranked merge present, leftmost first, until none applies: a heap over a
// linked list of symbols, O(n log n) even for a whole unsplit sentence.
void BpeModel::EncodeUncached(std::string_view word, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  thread_local std::vector<Symbol> symbols;
  symbols.clear();
  auto push = [&](int32_t id) {
    const int32_t n = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, n - 1, n + 1, true});
  };
  bool last_was_unk = false;
  for (size_t i = 0; i < word.size();) {
    const size_t len = std::min<size_t>(Utf8Length(static_cast<unsigned char>(word[i])), word.size() - i);
    const std::string_view ch = word.substr(i, len);
    i += len;
    if (auto it = vocab_.find(AsAbsl(ch)); it != vocab_.end()) {
      push(it->second);
      last_was_unk = false;
      continue;
    }
    bool bytes_ok = byte_fallback_;
    for (unsigned char b : ch) bytes_ok = bytes_ok && byte_ids_[b] >= 0;
    if (bytes_ok) {
      for (unsigned char b : ch) push(byte_ids_[b]);
      last_was_unk = false;
    } else if (unk_id_ >= 0) {
      if (!(fuse_unk_ && last_was_unk)) push(unk_id_);
      last_was_unk = true;
    }
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  struct Candidate {
    int32_t rank, pos;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  thread_local std::vector<Candidate> heap_storage;
  heap_storage.clear();
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap(std::greater<Candidate>(),
                                                                                       std::move(heap_storage));
  auto consider = [&](int32_t pos) {
    if (pos < 0 || symbols[pos].next < 0) return;
    auto it = merges_.find(PairKey(symbols[pos].id, symbols[symbols[pos].next].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos});
  };
  for (int32_t p = 0; p + 1 < static_cast<int32_t>(symbols.size()); ++p) consider(p);
  while (!heap.empty()) {
    const Candidate c = heap.top();
    heap.pop();
    Symbol& left = symbols[c.pos];
    if (!left.alive || left.next < 0) continue;
    auto it = merges_.find(PairKey(left.id, symbols[left.next].id));
    if (it == merges_.end() || it->second.rank != c.rank) continue;  // stale entry
    Symbol& right = symbols[left.next];
    left.id = it->second.merged_id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.pos;
    consider(left.prev);
    consider(c.pos);
  }
  for (int32_t p = 0; p >= 0; p = symbols[p].next) ids->push_back(symbols[p].id);
}

}  // namespace tessera::tokenizer::internal
