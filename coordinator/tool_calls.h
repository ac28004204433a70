// Tool calls in a chat answer's text, in the format the served model was trained to
// write them (tessera-coordinator --tool-call-parser), turned into OpenAI's tool_calls:
//
//   hermes       <tool_call>{"name": ..., "arguments": {...}}</tool_call>, any number,
//                after optional content (Qwen2/2.5/3, Hermes, and others' templates)
//   llama3_json  the whole answer is {"name": ..., "parameters": {...}} (or
//                "arguments"), several separated by ';', after an optional
//                <|python_tag|> (Llama 3.1/3.2 JSON tool calling)
//
// Text the format does not parse stays content: a malformed call is shown as written,
// never dropped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::coordinator {

enum class ToolCallFormat { kNone, kHermes, kLlama3Json };

// "none", "hermes" or "llama3_json" (INVALID_ARGUMENT otherwise).
absl::StatusOr<ToolCallFormat> ParseToolCallFormat(std::string_view name);

struct ToolCall {
  std::string name;
  std::string arguments;  // a JSON object's text, as OpenAI's function.arguments
};

// One answer's text as it streams in: what may be shown as content now, and the tool
// calls completed so far. Text that may still turn out to be part of a call is held
// back until it is known.
class ToolCallStream {
 public:
  explicit ToolCallStream(ToolCallFormat format) : format_(format) {}

  struct Output {
    std::string content;
    std::vector<ToolCall> calls;
  };
  // The next piece of the answer's text.
  Output Add(std::string_view text);
  // The answer has ended: everything still held back.
  Output Finish();

 private:
  Output AddHermes(bool final);
  Output FinishLlama3Json();

  const ToolCallFormat format_;
  std::string held_;         // text not yet given out
  bool in_call_ = false;     // hermes: inside <tool_call>
  int json_answer_ = -1;     // llama3_json: -1 undecided, 1 a JSON answer, 0 plain text
};

}  // namespace tessera::coordinator
