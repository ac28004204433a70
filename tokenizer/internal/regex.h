// A compiled PCRE2 pattern (UTF + Unicode properties, JIT where available), for the
// Split and ByteLevel pre-tokenizers. Immutable and thread-safe after Compile.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::tokenizer::internal {

class Regex {
 public:
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(const std::string& pattern);
  ~Regex();
  // Byte ranges [begin, end) of every non-overlapping match, left to right.
  std::vector<std::pair<size_t, size_t>> FindAll(std::string_view text) const;

 private:
  Regex() = default;
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace tessera::tokenizer::internal
