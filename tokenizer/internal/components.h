// The pipeline stages of a HuggingFace tokenizer.json, each built from its JSON
// object. An unsupported "type" is an INVALID_ARGUMENT that names it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace tessera::tokenizer::internal {

// Token ids above this are refused when a tokenizer.json is read: no vocabulary comes
// near it, and every id then fits an int32 and sizes no table past 16M entries.
inline constexpr int64_t kMaxTokenId = 1 << 24;

// Text -> text, before pre-tokenization (NFC, Prepend, Replace, ...).
class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(std::string* text) const = 0;
  static absl::StatusOr<std::unique_ptr<Normalizer>> FromJson(const nlohmann::json& j);
};

// Text -> words that BPE encodes one at a time (Split, ByteLevel, ...).
class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `words` by their pieces.
  virtual void Split(std::vector<std::string>* words) const = 0;
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> FromJson(const nlohmann::json& j);
};

// A "<0xXX>" token (SentencePiece byte fallback): true with the byte it stands for.
bool ParseByteToken(std::string_view token, int* byte);

// Token strings -> token strings, one step of decoding (ByteLevel, Replace,
// ByteFallback, Fuse, Strip, ...). The last step's strings are concatenated.
class Decoder {
 public:
  virtual ~Decoder() = default;
  virtual void Decode(std::vector<std::string>* tokens) const = 0;
  static absl::StatusOr<std::unique_ptr<Decoder>> FromJson(const nlohmann::json& j);
};

// The GPT-2 byte <-> printable-character map used by byte-level BPE.
struct ByteLevelMap {
  static const ByteLevelMap& Get();
  std::string byte_to_char[256];  // UTF-8 of the character standing for each byte
  // Appends the bytes that `text` (made of mapped characters) stands for; characters
  // outside the map are appended unchanged (as the reference does).
  void Unmap(std::string_view text, std::string* bytes) const;
};

}  // namespace tessera::tokenizer::internal
