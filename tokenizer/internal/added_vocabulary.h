// Added and special tokens: found in raw text before normalization and
// pre-tokenization, leftmost-longest, honouring lstrip / rstrip / single_word.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"

namespace tessera::tokenizer::internal {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool special = false;
};

// A piece of input text: plain text to normalize and tokenize, or one added token.
struct Segment {
  std::string_view text;
  int32_t added_id = -1;  // >= 0: an added token
};

class AddedVocabulary {
 public:
  static absl::StatusOr<AddedVocabulary> FromJson(const nlohmann::json& added_tokens);

  std::vector<Segment> Split(std::string_view text) const;
  const AddedToken* Find(int32_t id) const;
  const AddedToken* Find(std::string_view content) const;
  int32_t max_id() const { return max_id_; }

 private:
  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, size_t> by_id_;
  absl::flat_hash_map<std::string, size_t> by_content_;
  std::vector<size_t> by_first_byte_[256];  // candidates, longest first
  int32_t max_id_ = -1;
};

}  // namespace tessera::tokenizer::internal
