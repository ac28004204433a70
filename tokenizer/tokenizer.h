// Tokenizer: HuggingFace tokenizer.json, exactly.
//
// Supports what the five model families use: BPE models (byte-level as GPT-2,
// LLaMA-3 and Qwen2; SentencePiece-style with byte fallback as Mistral, Mixtral and
// LLaMA-2), normalizers (NFC/NFD/NFKC/NFKD, Prepend, Replace, Lowercase, Sequence),
// pre-tokenizers (Split with PCRE2, ByteLevel, Metaspace, Sequence), added and
// special tokens (matched before normalization, with lstrip / rstrip / single_word),
// post-processors (TemplateProcessing, ByteLevel) and decoders (ByteLevel, Replace,
// ByteFallback, Fuse, Strip, Metaspace, Sequence). Anything else fails to load with a
// message naming it.
//
// Thread-safety: immutable after Load; Encode and Decode may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::tokenizer {

class Tokenizer {
 public:
  // Reads DIR/tokenizer.json (and DIR/tokenizer_config.json when present).
  static absl::StatusOr<std::unique_ptr<Tokenizer>> Load(const std::string& dir);
  // From the text of a tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(std::string_view tokenizer_json);
  ~Tokenizer();

  // Text -> ids. `add_special_tokens` applies the post-processor's template (BOS...).
  // Text that is not valid UTF-8 is INVALID_ARGUMENT.
  absl::StatusOr<std::vector<int32_t>> Encode(std::string_view text, bool add_special_tokens) const;

  // Ids -> text; bytes that do not form UTF-8 become U+FFFD, as the reference does.
  // An id outside the vocabulary is INVALID_ARGUMENT.
  absl::StatusOr<std::string> Decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // One past the largest id (model vocabulary and added tokens).
  int32_t vocab_size() const;
  std::optional<int32_t> TokenToId(std::string_view token) const;
  bool IsSpecial(int32_t id) const;
  // A "<0xXX>" byte-fallback token: the text of a run of them can change as the run
  // grows (bytes that end up invalid UTF-8 all become U+FFFD).
  bool IsByteToken(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tessera::tokenizer
