// Streaming detokenization: feed ids one at a time, get text as soon as it is final.
//
// Text is emitted only when it is final: a multi-byte character split across tokens
// waits for its last byte, and a run of byte-fallback tokens ("<0xXX>") waits for the
// token after it, since the whole run becomes U+FFFDs if its bytes end up invalid. The
// decoder's context-dependent rules (SentencePiece drops the space of the sequence's
// first word) are respected by always decoding a window that starts at a token
// boundary already emitted: the text of the window with and without the new tokens is
// compared, and only the difference is emitted, when the earlier text is a prefix of
// the new one. Every piece is valid UTF-8, and the concatenation of everything
// emitted, Finish() included, equals Decode(all ids).
//
// Thread-safety: one decoder per stream; the Tokenizer it reads must outlive it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace tessera::tokenizer {

class IncrementalDecoder {
 public:
  IncrementalDecoder(const Tokenizer& tokenizer, bool skip_special_tokens)
      : tokenizer_(tokenizer), skip_special_tokens_(skip_special_tokens) {}

  // Adds one generated id; returns the text it completes (possibly empty).
  absl::StatusOr<std::string> Add(int32_t id);
  // Returns whatever is still held back (an incomplete character becomes U+FFFD).
  absl::StatusOr<std::string> Finish();

 private:
  absl::StatusOr<std::string> Emit(bool final);

  const Tokenizer& tokenizer_;
  bool skip_special_tokens_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // window start: a boundary whose text has been emitted
  size_t read_offset_ = 0;    // ids up to here have been emitted
};

}  // namespace tessera::tokenizer
