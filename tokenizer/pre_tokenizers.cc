// Pre-tokenizers: Sequence, Split, ByteLevel, Metaspace.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/components.h"
#include "tokenizer/internal/regex.h"
#include "tokenizer/internal/utf8.h"

namespace tessera::tokenizer::internal {
namespace {

using nlohmann::json;

// GPT-2's split pattern, used by ByteLevel when use_regex is set.
constexpr char kGpt2Pattern[] = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

enum class Behavior { kIsolated, kRemoved, kMergedWithPrevious, kMergedWithNext, kContiguous };

// Splits `text` around the delimiters found by `regex` (matches, or the gaps between
// them when inverted), as HF's SplitDelimiterBehavior says.
void SplitText(std::string_view text, const Regex& regex, Behavior behavior, bool invert,
               std::vector<std::string>* out) {
  struct Piece {
    size_t begin, end;
    bool delimiter;
  };
  std::vector<Piece> pieces;
  size_t last = 0;
  for (auto [b, e] : regex.FindAll(text)) {
    if (b > last) pieces.push_back({last, b, invert});
    pieces.push_back({b, e, !invert});
    last = e;
  }
  if (last < text.size()) pieces.push_back({last, text.size(), invert});

  std::vector<std::string> result;
  bool pending_next = false;  // MergedWithNext: the previous piece waits for the next
  for (size_t i = 0; i < pieces.size(); ++i) {
    const Piece& p = pieces[i];
    std::string_view s = text.substr(p.begin, p.end - p.begin);
    switch (behavior) {
      case Behavior::kIsolated:
        result.emplace_back(s);
        break;
      case Behavior::kRemoved:
        if (!p.delimiter) result.emplace_back(s);
        break;
      case Behavior::kMergedWithPrevious:
        if (p.delimiter && !result.empty() && !pieces[i - 1].delimiter) {
          result.back().append(s);
        } else {
          result.emplace_back(s);
        }
        break;
      case Behavior::kMergedWithNext:
        if (pending_next) {
          result.back().append(s);
        } else {
          result.emplace_back(s);
        }
        pending_next = p.delimiter;
        break;
      case Behavior::kContiguous:
        if (p.delimiter && i > 0 && pieces[i - 1].delimiter) {
          result.back().append(s);
        } else {
          result.emplace_back(s);
        }
        break;
    }
  }
  for (auto& r : result) out->push_back(std::move(r));
}

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void Split(std::vector<std::string>* words) const override {
    for (const auto& s : steps_) s->Split(words);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::unique_ptr<Regex> regex, Behavior behavior, bool invert)
      : regex_(std::move(regex)), behavior_(behavior), invert_(invert) {}
  void Split(std::vector<std::string>* words) const override {
    std::vector<std::string> out;
    for (const std::string& w : *words) SplitText(w, *regex_, behavior_, invert_, &out);
    *words = std::move(out);
  }

 private:
  std::unique_ptr<Regex> regex_;
  Behavior behavior_;
  bool invert_;
};

// Optionally adds a leading space, optionally splits with GPT-2's pattern, then maps
// every byte to its printable stand-in character.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::unique_ptr<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}
  void Split(std::vector<std::string>* words) const override {
    std::vector<std::string> pieces;
    for (std::string& w : *words) {
      if (add_prefix_space_ && (w.empty() || w[0] != ' ')) w = " " + w;
      if (regex_) {
        SplitText(w, *regex_, Behavior::kIsolated, false, &pieces);
      } else {
        pieces.push_back(std::move(w));
      }
    }
    const ByteLevelMap& map = ByteLevelMap::Get();
    words->clear();
    for (const std::string& p : pieces) {
      std::string mapped;
      mapped.reserve(p.size() * 2);
      for (unsigned char c : p) mapped += map.byte_to_char[c];
      words->push_back(std::move(mapped));
    }
  }

 private:
  bool add_prefix_space_;
  std::unique_ptr<Regex> regex_;
};

// SentencePiece's word marker: spaces become `replacement`, one is prepended (per
// prepend_scheme), and words are split before each marker.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(std::string replacement, bool prepend, bool split)
      : replacement_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void Split(std::vector<std::string>* words) const override {
    std::vector<std::string> out;
    for (const std::string& w : *words) {
      std::string s = absl::StrReplaceAll(w, {{" ", replacement_}});
      if (prepend_ && s.compare(0, replacement_.size(), replacement_) != 0) s.insert(0, replacement_);
      if (!split_) {
        out.push_back(std::move(s));
        continue;
      }
      size_t start = 0;
      for (size_t pos = s.find(replacement_, 1); pos != std::string::npos; pos = s.find(replacement_, pos + 1)) {
        if (pos > start) out.push_back(s.substr(start, pos - start));
        start = pos;
      }
      if (start < s.size()) out.push_back(s.substr(start));
    }
    *words = std::move(out);
  }

 private:
  std::string replacement_;
  bool prepend_;
  bool split_;
};

absl::StatusOr<Behavior> ParseBehavior(const json& j) {
  const std::string b = j.value("behavior", "Isolated");
  if (b == "Isolated") return Behavior::kIsolated;
  if (b == "Removed") return Behavior::kRemoved;
  if (b == "MergedWithPrevious") return Behavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return Behavior::kMergedWithNext;
  if (b == "Contiguous") return Behavior::kContiguous;
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unsupported Split behavior '", b, "'"));
}

std::string QuoteRegex(const std::string& literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::FromJson(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: pre_tokenizer without a type");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("pretokenizers") || !j["pretokenizers"].is_array()) {
      return absl::InvalidArgumentError("tokenizer.json: Sequence pre_tokenizer needs a 'pretokenizers' list");
    }
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (const auto& step : j["pretokenizers"]) {
      ASSIGN_OR_RETURN(auto p, FromJson(step));
      steps.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(steps));
  }
  if (type == "Split") {
    const json& pattern = j.value("pattern", json::object());
    std::string regex_text;
    if (pattern.contains("Regex") && pattern["Regex"].is_string()) {
      regex_text = pattern["Regex"].get<std::string>();
    } else if (pattern.contains("String") && pattern["String"].is_string()) {
      regex_text = QuoteRegex(pattern["String"].get<std::string>());
    } else {
      return absl::InvalidArgumentError("tokenizer.json: Split pre_tokenizer needs a Regex or String pattern");
    }
    ASSIGN_OR_RETURN(auto regex, Regex::Compile(regex_text));
    ASSIGN_OR_RETURN(Behavior behavior, ParseBehavior(j));
    return std::make_unique<SplitPreTokenizer>(std::move(regex), behavior, j.value("invert", false));
  }
  if (type == "ByteLevel") {
    std::unique_ptr<Regex> regex;
    if (j.value("use_regex", true)) {
      ASSIGN_OR_RETURN(regex, Regex::Compile(kGpt2Pattern));
    }
    return std::make_unique<ByteLevelPreTokenizer>(j.value("add_prefix_space", false), std::move(regex));
  }
  if (type == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    if (scheme == "first") {
      return absl::InvalidArgumentError("tokenizer.json: Metaspace prepend_scheme 'first' is not supported");
    }
    return std::make_unique<MetaspacePreTokenizer>(j.value("replacement", "\u2581"), scheme == "always",
                                                   j.value("split", true));
  }
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unsupported pre_tokenizer type '", type, "'"));
}

}  // namespace tessera::tokenizer::internal
