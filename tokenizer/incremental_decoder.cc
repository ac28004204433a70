#include "tokenizer/incremental_decoder.h"

#include <span>

#include "common/status.h"

namespace tessera::tokenizer {
namespace {
constexpr std::string_view kReplacement = "\xef\xbf\xbd";

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

absl::StatusOr<std::string> IncrementalDecoder::Add(int32_t id) {
  ids_.push_back(id);
  return Emit(/*final=*/false);
}

absl::StatusOr<std::string> IncrementalDecoder::Finish() { return Emit(/*final=*/true); }

absl::StatusOr<std::string> IncrementalDecoder::Emit(bool final) {
  const std::span<const int32_t> all(ids_);
  ASSIGN_OR_RETURN(std::string before,
                   tokenizer_.Decode(all.subspan(prefix_offset_, read_offset_ - prefix_offset_), skip_special_tokens_));
  ASSIGN_OR_RETURN(std::string after, tokenizer_.Decode(all.subspan(prefix_offset_), skip_special_tokens_));
  // Hold back, unless finishing, while the newest text may still change: it ends in an
  // incomplete character or in a run of byte tokens, or the earlier text changed.
  const bool unsettled = EndsWith(after, kReplacement) || (!ids_.empty() && tokenizer_.IsByteToken(ids_.back())) ||
                         after.compare(0, before.size(), before) != 0;
  if (after.size() <= before.size() || (!final && unsettled)) {
    if (final) read_offset_ = ids_.size();
    return std::string();
  }
  std::string text = after.substr(before.size());
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return text;
}

}  // namespace tessera::tokenizer
