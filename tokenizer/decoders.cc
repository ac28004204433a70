// Decoders: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace.
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/json_int.h"
#include "common/status.h"
#include "nlohmann/json.hpp"
#include "tokenizer/internal/components.h"
#include "tokenizer/internal/utf8.h"

namespace tessera::tokenizer::internal {
namespace {

using nlohmann::json;

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps) : steps_(std::move(steps)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (const auto& s : steps_) s->Decode(tokens);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

// Maps the stand-in characters back to bytes and reads them as UTF-8 (lossily).
class ByteLevelDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) ByteLevelMap::Get().Unmap(t, &bytes);
    tokens->assign(1, Utf8Lossy(bytes));
  }
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string from, std::string to) : from_(std::move(from)), to_(std::move(to)) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) absl::StrReplaceAll({{from_, to_}}, &t);
  }

 private:
  std::string from_, to_;
};

// Strip decoders remove at most this many copies of their content from each end.
constexpr int64_t kMaxStrip = 1 << 16;

// Runs of "<0xXX>" tokens become the text their bytes spell; bytes that are not valid
// UTF-8 become one U+FFFD each (as the reference does).
class ByteFallbackDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(kReplacementChar);
      }
      pending.clear();
    };
    for (std::string& t : *tokens) {
      int byte;
      if (ParseByteToken(t, &byte)) {
        pending.push_back(static_cast<char>(byte));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }
};

class FuseDecoder : public Decoder {
 public:
  void Decode(std::vector<std::string>* tokens) const override { tokens->assign(1, absl::StrJoin(*tokens, "")); }
};

// Removes up to `start` leading and `stop` trailing copies of `content` per token.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop) : content_(std::move(content)), start_(start), stop_(stop) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      for (int i = 0; i < start_ && t.compare(0, content_.size(), content_) == 0; ++i) t.erase(0, content_.size());
      for (int i = 0; i < stop_ && t.size() >= content_.size() &&
                      t.compare(t.size() - content_.size(), content_.size(), content_) == 0;
           ++i) {
        t.erase(t.size() - content_.size());
      }
    }
  }

 private:
  std::string content_;
  int start_, stop_;
};

// Metaspace: the marker becomes a space; the first token loses its leading one.
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first) : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void Decode(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      std::string& t = (*tokens)[i];
      absl::StrReplaceAll({{replacement_, " "}}, &t);
      if (i == 0 && strip_first_ && !t.empty() && t[0] == ' ') t.erase(0, 1);
    }
  }

 private:
  std::string replacement_;
  bool strip_first_;
};

}  // namespace

bool ParseByteToken(std::string_view t, int* byte) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return false;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  if (hi < 0 || lo < 0) return false;
  *byte = hi * 16 + lo;
  return true;
}

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::FromJson(const json& j) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    return absl::InvalidArgumentError("tokenizer.json: decoder without a type");
  }
  const std::string type = j["type"].get<std::string>();
  if (type == "Sequence") {
    if (!j.contains("decoders") || !j["decoders"].is_array()) {
      return absl::InvalidArgumentError("tokenizer.json: Sequence decoder needs a 'decoders' list");
    }
    std::vector<std::unique_ptr<Decoder>> steps;
    for (const auto& step : j["decoders"]) {
      ASSIGN_OR_RETURN(auto d, FromJson(step));
      steps.push_back(std::move(d));
    }
    return std::make_unique<SequenceDecoder>(std::move(steps));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Replace") {
    const json& pattern = j.value("pattern", json::object());
    if (!pattern.contains("String") || !pattern["String"].is_string() || !j.contains("content") ||
        !j["content"].is_string()) {
      return absl::InvalidArgumentError("tokenizer.json: Replace decoder supports only String patterns");
    }
    return std::make_unique<ReplaceDecoder>(pattern["String"].get<std::string>(), j["content"].get<std::string>());
  }
  if (type == "Strip") {
    const std::optional<int64_t> start = JsonInt(j.value("start", json(0)), 0, kMaxStrip);
    const std::optional<int64_t> stop = JsonInt(j.value("stop", json(0)), 0, kMaxStrip);
    if (!start || !stop) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer.json: Strip decoder's start and stop must be integers in [0, ", kMaxStrip, "]"));
    }
    return std::make_unique<StripDecoder>(j.value("content", " "), static_cast<int>(*start), static_cast<int>(*stop));
  }
  if (type == "Metaspace") {
    const std::string scheme = j.value("prepend_scheme", j.value("add_prefix_space", true) ? "always" : "never");
    return std::make_unique<MetaspaceDecoder>(j.value("replacement", "\u2581"), scheme != "never");
  }
  return absl::InvalidArgumentError(absl::StrCat("tokenizer.json: unsupported decoder type '", type, "'"));
}

const ByteLevelMap& ByteLevelMap::Get() {
  static const ByteLevelMap* map = [] {
    auto* m = new ByteLevelMap;
    // GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
    // rest are shifted to U+0100 and up, in byte order.
    int next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      m->byte_to_char[b].clear();
      AppendUtf8(printable ? static_cast<uint32_t>(b) : static_cast<uint32_t>(next++), &m->byte_to_char[b]);
    }
    return m;
  }();
  return *map;
}

void ByteLevelMap::Unmap(std::string_view text, std::string* bytes) const {
  // Stand-ins are U+0021..U+0143: decode each character and invert the map.
  static const auto* inverse = [] {
    auto* inv = new std::vector<int>(512, -1);
    const ByteLevelMap& m = Get();
    for (int b = 0; b < 256; ++b) {
      size_t i = 0;
      (*inv)[NextCodepoint(m.byte_to_char[b], &i)] = b;
    }
    return inv;
  }();
  for (size_t i = 0; i < text.size();) {
    const size_t start = i;
    const uint32_t cp = NextCodepoint(text, &i);
    if (cp < inverse->size() && (*inverse)[cp] >= 0) {
      bytes->push_back(static_cast<char>((*inverse)[cp]));
    } else {
      bytes->append(text.substr(start, i - start));
    }
  }
}

}  // namespace tessera::tokenizer::internal
