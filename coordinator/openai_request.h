// The OpenAI API's request bodies, read into the frontend's own request form
// (v1::GenerateRequest), so HTTP and gRPC requests share one validation path
// (Frontend::Start). Here only the JSON shape is checked: each field's type, named in
// the error (FieldError) as the API's `param`; ranges are the frontend's.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/chat_context.h"
#include "coordinator/tool_calls.h"
#include "nlohmann/json.hpp"
#include "tessera/v1/tessera.pb.h"

namespace tessera::coordinator {

inline constexpr int kMaxChoices = 16;  // n
inline constexpr int kMaxCompletionLogprobs = 20;

// POST /v1/completions, and /v1/chat/completions once its messages are rendered.
struct CompletionRequest {
  bool chat = false;  // answered in the chat shapes (message / delta)
  std::string model;
  // One per prompt: a batch ("prompt" as a list of strings or of id lists) has several.
  std::vector<v1::GenerateRequest> prompts;
  int n = 1;  // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // the prompt's text before each choice's
  int logprobs = -1;           // -1: none; else how many top logprobs per token
  int32_t priority = 0;        // vLLM's extension: lower goes sooner
  // Tessera's "kv_policy", "sink_tokens" and "window" (unset: the server's --kv-policy).
  std::optional<v1::KvPolicy> kv_policy;
  // Chat with tools: how each choice's text is read for tool calls (kNone: not read).
  ToolCallFormat tool_calls = ToolCallFormat::kNone;
  // Chat whose conversation was shortened to fit the context: how (the answer's
  // `context_overflow`); null when it fitted as it was.
  nlohmann::json context_overflow;
};

absl::StatusOr<CompletionRequest> ParseCompletionRequest(const std::string& body);

// POST /v1/chat/completions: the completion request (its one prompt still empty: the
// caller renders `messages` with the chat template) and the messages.
struct ChatRequest {
  CompletionRequest completion;
  nlohmann::ordered_json messages;
  bool add_generation_prompt = true;
  // OpenAI's function tools (null: none), for the template's `tools` variable, and
  // whether the answer is read for calls (tool_choice "auto", the default with tools;
  // "none" renders the tools but reads no calls).
  nlohmann::ordered_json tools;
  bool call_tools = false;
  // Tessera's "context_overflow": what happens when the conversation does not fit the
  // context (chat_context.h); unset: the server's --chat-context-overflow.
  std::optional<ContextOverflow> context_overflow;
};
absl::StatusOr<ChatRequest> ParseChatRequest(const std::string& body);

// POST /v1/embeddings: "input" as the completions' "prompt" (a string, ids, or a batch
// of either), "encoding_format" float or base64, "priority" (vLLM's extension).
struct EmbeddingsRequest {
  v1::EmbedRequest embed;  // the model and inputs, as gRPC's Embed takes them
  bool base64 = false;     // each embedding as base64 of its little-endian float32s
};
absl::StatusOr<EmbeddingsRequest> ParseEmbeddingsRequest(const std::string& body);

// POST /tokenize: {"prompt": "...", "add_special_tokens": true}.
struct TokenizeRequest {
  std::string model;
  std::string prompt;
  bool add_special_tokens = true;
};
absl::StatusOr<TokenizeRequest> ParseTokenizeRequest(const std::string& body);

// POST /detokenize: {"tokens": [ids]}.
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
absl::StatusOr<DetokenizeRequest> ParseDetokenizeRequest(const std::string& body);

}  // namespace tessera::coordinator
