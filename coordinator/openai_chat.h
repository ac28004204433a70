// One POST /v1/chat/completions up to its completion: the messages (and tools)
// rendered by the model's chat template, fitted into the model's context by the
// overflow policy (chat_context.h), which for `summarize` first asks the model for a
// summary of the oldest turns (a request of its own, read through its listener on the
// connection's strand), then run as a completion (openai_completion.h).
#pragma once

#include <memory>
#include <string>

#include "coordinator/chat_context.h"
#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/openai_request.h"
#include "coordinator/tool_calls.h"
#include "tokenizer/chat_template.h"

namespace tessera::coordinator {

// The server's chat settings (tessera-coordinator flags).
struct ChatSettings {
  const tokenizer::ChatTemplate* chat = nullptr;  // null: the model has none
  ToolCallFormat tool_calls = ToolCallFormat::kNone;
  ContextOverflow overflow = ContextOverflow::kError;  // unless the request names one
};

void RunChat(Frontend* frontend, const ChatSettings& settings, ChatRequest request, std::string tenant,
             std::shared_ptr<HttpReply> reply, int64_t created);

}  // namespace tessera::coordinator
