// Fitting a chat conversation into the model's context (docs/http-api.md, "When a
// conversation outgrows the context"). A conversation is its leading system messages,
// then turns: each starts at a user message and holds the assistant and tool messages
// that answer it. When the rendered conversation and max_tokens do not fit, the
// policy says what happens:
//
//   error      the request is refused, as before (400 once the prompt leaves no room)
//   truncate   the oldest turns are dropped, the system messages and the last turn kept
//   summarize  the model summarises the oldest turns; the summary replaces them (added
//              to the system prompt, or before the first kept turn without one)
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {

enum class ContextOverflow { kError, kTruncate, kSummarize };

// "error", "truncate" or "summarize" (INVALID_ARGUMENT otherwise).
absl::StatusOr<ContextOverflow> ParseContextOverflow(std::string_view name);

class Conversation {
 public:
  explicit Conversation(nlohmann::ordered_json messages);

  size_t num_turns() const { return turn_starts_.size(); }
  // The conversation without its first `drop` turns; `summary` (may be empty), which
  // stands for them, is added to the last leading system message, or else before the
  // content of the first kept turn's user message.
  nlohmann::ordered_json Without(size_t drop, const std::string& summary) const;
  // The first `turns` turns as text to summarise ("User: ...", one message a line).
  std::string Transcript(size_t turns) const;

 private:
  nlohmann::ordered_json messages_;
  size_t system_end_ = 0;            // messages [0, system_end_) are the leading system ones
  std::vector<size_t> turn_starts_;  // the message each turn starts at
};

// The request the server makes to summarise `transcript`: one user message.
nlohmann::ordered_json SummaryRequestMessages(const std::string& transcript);

}  // namespace tessera::coordinator
