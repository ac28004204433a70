#include "coordinator/openai_api.h"

#include <ctime>

#include "coordinator/openai_completion.h"
#include "coordinator/openai_embeddings.h"
#include "coordinator/openai_request.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {
namespace {

using nlohmann::json;

constexpr char kJson[] = "application/json";

std::string ErrorType(int status) {
  switch (status) {
    case 400:
    case 413:
    case 431:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 404:
      return "not_found_error";
    case 405:
      return "method_not_allowed_error";
    case 409:
      return "conflict_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    default:
      return "server_error";
  }
}

void SendJson(HttpReply& reply, const json& body) {
  reply.Send(200, kJson, body.dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

std::string ErrorJson(int status, const std::string& message, const std::string& param) {
  const json error = {{"message", message},
                      {"type", ErrorType(status)},
                      {"param", param.empty() ? json(nullptr) : json(param)},
                      {"code", status}};
  return json{{"error", error}}.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SendError(HttpReply& reply, const absl::Status& error) {
  const int status = HttpStatusFor(error);
  reply.Send(status, kJson, ErrorJson(status, std::string(error.message()), ErrorField(error)));
}

OpenAiApi::OpenAiApi(Frontend* frontend, const ServingMetrics* metrics, const ChatSettings& chat)
    : frontend_(frontend), metrics_(metrics), chat_(chat), created_(std::time(nullptr)) {}

void OpenAiApi::Handle(HttpRequest request, std::shared_ptr<HttpReply> reply) {
  // Handlers get the caller's tenant ("" on open routes and without keys).
  using Handler = void (OpenAiApi::*)(const HttpRequest&, const std::string&, const std::shared_ptr<HttpReply>&) const;
  struct Route {
    const char* method;
    const char* path;
    Handler handler;
    bool needs_key;  // with --api-key-file; probes and scrapers need none
  };
  static constexpr Route kRoutes[] = {
      {"GET", "/health", &OpenAiApi::Health, false},
      {"GET", "/ready", &OpenAiApi::Ready, false},
      {"GET", "/metrics", &OpenAiApi::Metrics, false},
      {"GET", "/v1/models", &OpenAiApi::Models, true},
      {"POST", "/v1/completions", &OpenAiApi::Completions, true},
      {"POST", "/v1/chat/completions", &OpenAiApi::ChatCompletions, true},
      {"POST", "/v1/embeddings", &OpenAiApi::Embeddings, true},
      {"POST", "/tokenize", &OpenAiApi::Tokenize, true},
      {"POST", "/detokenize", &OpenAiApi::Detokenize, true},
  };
  bool known_path = false;
  for (const Route& route : kRoutes) {
    if (request.path != route.path) continue;
    if (request.method == route.method) {
      std::string tenant;
      if (route.needs_key) {
        absl::StatusOr<std::string> caller = frontend_->Authenticate(request.authorization);
        if (!caller.ok()) return SendError(*reply, caller.status());
        tenant = std::move(*caller);
      }
      return (this->*route.handler)(request, tenant, reply);
    }
    known_path = true;
  }
  if (known_path) return reply->Send(405, kJson, ErrorJson(405, request.method + " is not allowed on " + request.path));
  reply->Send(404, kJson, ErrorJson(404, "no route " + request.method + " " + request.path));
}

void OpenAiApi::Health(const HttpRequest&, const std::string&, const std::shared_ptr<HttpReply>& reply) const {
  reply->Send(200, kJson, "{}");
}

void OpenAiApi::Ready(const HttpRequest&, const std::string&, const std::shared_ptr<HttpReply>& reply) const {
  if (frontend_->Ready()) return reply->Send(200, kJson, R"({"status":"ready"})");
  SendError(*reply, absl::UnavailableError("no replica group is ready yet"));
}

void OpenAiApi::Models(const HttpRequest&, const std::string&, const std::shared_ptr<HttpReply>& reply) const {
  const json model = {{"id", frontend_->model_name()},
                      {"object", "model"},
                      {"created", created_},
                      {"owned_by", "tessera"},
                      {"root", frontend_->model_name()},
                      {"max_model_len", frontend_->spec().max_position_embeddings}};
  SendJson(*reply, {{"object", "list"}, {"data", json::array({model})}});
}

void OpenAiApi::Tokenize(const HttpRequest& request, const std::string&,
                       const std::shared_ptr<HttpReply>& reply) const {
  absl::StatusOr<TokenizeRequest> r = ParseTokenizeRequest(request.body);
  if (!r.ok()) return SendError(*reply, r.status());
  if (absl::Status s = frontend_->CheckModel(r->model); !s.ok()) return SendError(*reply, s);
  absl::StatusOr<std::vector<int32_t>> ids = frontend_->TokenizeText(r->prompt, r->add_special_tokens);
  if (!ids.ok()) return SendError(*reply, ids.status());
  SendJson(*reply, {{"count", ids->size()},
                   {"max_model_len", frontend_->spec().max_position_embeddings},
                   {"tokens", *ids}});
}

void OpenAiApi::Detokenize(const HttpRequest& request, const std::string&,
                       const std::shared_ptr<HttpReply>& reply) const {
  absl::StatusOr<DetokenizeRequest> r = ParseDetokenizeRequest(request.body);
  if (!r.ok()) return SendError(*reply, r.status());
  if (absl::Status s = frontend_->CheckModel(r->model); !s.ok()) return SendError(*reply, s);
  absl::StatusOr<std::string> text = frontend_->DetokenizeIds(r->tokens, /*skip_special_tokens=*/false);
  if (!text.ok()) return SendError(*reply, text.status());
  SendJson(*reply, {{"prompt", *text}});
}

void OpenAiApi::Metrics(const HttpRequest&, const std::string&, const std::shared_ptr<HttpReply>& reply) const {
  reply->Send(200, "text/plain; version=0.0.4; charset=utf-8", metrics_->Scrape(frontend_->Info()));
}

void OpenAiApi::ChatCompletions(const HttpRequest& request, const std::string& tenant,
                                const std::shared_ptr<HttpReply>& reply) const {
  absl::StatusOr<ChatRequest> r = ParseChatRequest(request.body);
  if (!r.ok()) return SendError(*reply, r.status());
  if (absl::Status s = frontend_->CheckModel(r->completion.model); !s.ok()) return SendError(*reply, s);
  RunChat(frontend_, chat_, std::move(*r), tenant, reply, std::time(nullptr));
}

void OpenAiApi::Completions(const HttpRequest& request, const std::string& tenant,
                            const std::shared_ptr<HttpReply>& reply) const {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(request.body);
  if (!r.ok()) return SendError(*reply, r.status());
  if (absl::Status s = frontend_->CheckModel(r->model); !s.ok()) return SendError(*reply, s);
  RunCompletion(frontend_, std::move(*r), tenant, reply, std::time(nullptr));
}

void OpenAiApi::Embeddings(const HttpRequest& request, const std::string& tenant,
                           const std::shared_ptr<HttpReply>& reply) const {
  absl::StatusOr<EmbeddingsRequest> r = ParseEmbeddingsRequest(request.body);
  if (!r.ok()) return SendError(*reply, r.status());
  RunEmbeddings(frontend_, std::move(*r), tenant, reply);
}

}  // namespace tessera::coordinator
