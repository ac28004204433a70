// OpenAiApi: the HTTP front door (docs/http-api.md). OpenAI's request and response
// shapes over HttpServer, on the same path as the gRPC API: every request goes through
// Frontend::Start (one validation, one tokenizer, one set of limits, one router).
//
//   GET  /health              the process is alive
//   GET  /ready               some replica group can serve (503 otherwise)
//   GET  /v1/models           the served model
//   POST /v1/completions      text completions, whole or streamed (Server-Sent Events)
//   POST /v1/chat/completions chat, the messages rendered by the model's chat template
//   POST /v1/embeddings       embeddings of one input or a batch (Frontend::StartEmbeddings)
//   POST /tokenize, /detokenize  as vLLM has them
//   GET  /metrics             Prometheus text format (ServingMetrics)
//
// Errors are {"error": {"message", "type", "param", "code"}} with the HTTP status.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "coordinator/frontend.h"
#include "coordinator/http_server.h"
#include "coordinator/metrics.h"
#include "coordinator/openai_chat.h"
#include "tokenizer/chat_template.h"

namespace tessera::coordinator {

// The HTTP status for a frontend error (INVALID_ARGUMENT 400, NOT_FOUND 404,
// RESOURCE_EXHAUSTED 429, UNAVAILABLE 503, ...).
int HttpStatusFor(const absl::Status& status);
// The error body for `status` (the HTTP one), naming `param` when there is one.
std::string ErrorJson(int status, const std::string& message, const std::string& param = "");
// Answers `error` as its HTTP status and error body.
void SendError(HttpReply& reply, const absl::Status& error);

class OpenAiApi {
 public:
  // `chat` says how chat requests are rendered and answered (openai_chat.h).
  OpenAiApi(Frontend* frontend, const ServingMetrics* metrics, const ChatSettings& chat);

  // The HttpServer handler.
  void Handle(HttpRequest request, std::shared_ptr<HttpReply> reply);

 private:
  // The routes (Handle's table), each answering on `reply`.
  void Health(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Ready(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Models(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Tokenize(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Detokenize(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Completions(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Metrics(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void ChatCompletions(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;
  void Embeddings(const HttpRequest& request, const std::string& tenant,
                 const std::shared_ptr<HttpReply>& reply) const;

  Frontend* const frontend_;
  const ServingMetrics* const metrics_;
  const ChatSettings chat_;
  const int64_t created_;  // when the server started (unix seconds), for /v1/models
};

}  // namespace tessera::coordinator
