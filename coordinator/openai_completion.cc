#include "coordinator/openai_completion.h"

#include <algorithm>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/openai_api.h"
#include "nlohmann/json.hpp"

namespace tessera::coordinator {
namespace {

using nlohmann::json;

std::string Dump(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

struct Choice {
  std::shared_ptr<Request> request;
  size_t prompt = 0;          // its prompt in the batch
  std::string text;           // whole answers: the text so far
  json logprobs;              // whole answers: the logprobs so far (null when not asked for)
  size_t text_bytes = 0;      // text produced so far, for text_offset
  std::string finish_reason;  // empty while it runs
  std::optional<ToolCallStream> tools;  // chat with tools: reads the text for calls
  json tool_calls = json::array();      // the calls read so far, in OpenAI's form
};

// A call in OpenAI's form, with an id the client answers it by.
json ToolCallJson(const ToolCall& call) {
  return {{"id", RandomRequestId("call_")},
          {"type", "function"},
          {"function", {{"name", call.name}, {"arguments", call.arguments}}}};
}

class CompletionCall : public std::enable_shared_from_this<CompletionCall> {
 public:
  CompletionCall(Frontend* frontend, CompletionRequest request, std::string tenant, std::shared_ptr<HttpReply> reply,
                 int64_t created)
      : frontend_(frontend),
        request_(std::move(request)),
        tenant_(std::move(tenant)),
        reply_(std::move(reply)),
        created_(created),
        id_(RandomRequestId(request_.chat ? "chatcmpl-" : "cmpl-")) {}

  // On the connection's strand, as every method below. Each prompt's first choice
  // starts now; its siblings (n > 1) start once it has produced its first token, when
  // the prompt's full KV blocks are in the prefix cache: they share those blocks
  // instead of computing the prompt again.
  void Start() {
    for (size_t p = 0; p < request_.prompts.size(); ++p) {
      for (int j = 0; j < request_.n; ++j) {
        choices_.push_back({nullptr, p, "", request_.logprobs >= 0 ? EmptyLogprobs() : json(nullptr)});
        if (request_.tool_calls != ToolCallFormat::kNone) choices_.back().tools.emplace(request_.tool_calls);
      }
    }
    for (size_t c = 0; c < choices_.size(); c += static_cast<size_t>(request_.n)) {
      if (absl::Status s = StartChoice(c); !s.ok()) {
        AbortAll();
        return SendError(*reply_, s);
      }
    }
    if (request_.stream) reply_->StartStream("text/event-stream");
    if (request_.echo) Echo();
    if (request_.chat && request_.stream) {  // the first delta of each choice names its role
      for (size_t c = 0; c < choices_.size(); ++c) {
        WriteEvent(Envelope(json::array({{{"index", c},
                                          {"delta", {{"role", "assistant"}, {"content", ""}}},
                                          {"logprobs", nullptr},
                                          {"finish_reason", nullptr}}})));
      }
    }
    reply_->OnClose([self = shared_from_this()] { self->AbortAll(); });
    for (size_t c = 0; c < choices_.size(); c += static_cast<size_t>(request_.n)) Listen(c);
  }

 private:
  // Choice `c` is sample c % n of prompt c / n (with a seed, sample j draws with seed + j).
  absl::Status StartChoice(size_t c) {
    v1::GenerateRequest r = request_.prompts[choices_[c].prompt];
    const int j = static_cast<int>(c % static_cast<size_t>(request_.n));
    if (j > 0 && r.sampling().has_seed()) r.mutable_sampling()->set_seed(r.sampling().seed() + j);
    absl::StatusOr<std::shared_ptr<Request>> started = frontend_->Start(r, tenant_);
    if (!started.ok()) return started.status();
    choices_[c].request = std::move(*started);
    return absl::OkStatus();
  }

  // Routes choice `c`'s events to this call, and takes those already queued.
  void Listen(size_t c) {
    choices_[c].request->SetListener([weak = weak_from_this(), reply = reply_, c] {
      reply->Post([weak, c] {
        if (auto self = weak.lock()) self->Take(c);
      });
    });
    Take(c);
  }

  // The first choice of a prompt has its first token: its siblings start.
  void StartSiblings(size_t first) {
    for (size_t c = first + 1; c < first + static_cast<size_t>(request_.n); ++c) {
      if (absl::Status s = StartChoice(c); !s.ok()) return Fail(s);
    }
    for (size_t c = first + 1; c < first + static_cast<size_t>(request_.n) && !ended_; ++c) Listen(c);
  }

  // Logprobs in the API's shape: completions' parallel lists, or chat's content entries.
  json EmptyLogprobs() const {
    if (request_.chat) return {{"content", json::array()}};
    return {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
            {"text_offset", json::array()}};
  }

  static json Bytes(const std::string& token) {
    json bytes = json::array();
    for (unsigned char b : token) bytes.push_back(b);
    return bytes;
  }

  void AddLogprob(const v1::TokenLogprob& lp, Choice& choice, json* logprobs) const {
    const std::string token = TokenText(lp.token_id());
    if (request_.chat) {
      json top = json::array();
      for (const v1::TopLogprob& t : lp.top()) {
        const std::string text = TokenText(t.token_id());
        top.push_back({{"token", text}, {"logprob", t.logprob()}, {"bytes", Bytes(text)}});
      }
      (*logprobs)["content"].push_back(
          {{"token", token}, {"logprob", lp.logprob()}, {"bytes", Bytes(token)}, {"top_logprobs", std::move(top)}});
      return;
    }
    json top = json::object();
    for (const v1::TopLogprob& t : lp.top()) top[TokenText(t.token_id())] = t.logprob();
    (*logprobs)["tokens"].push_back(token);
    (*logprobs)["token_logprobs"].push_back(lp.logprob());
    (*logprobs)["top_logprobs"].push_back(std::move(top));
    (*logprobs)["text_offset"].push_back(choice.text_bytes);
    choice.text_bytes += token.size();
  }

  std::string TokenText(int32_t id) const {
    absl::StatusOr<std::string> text = frontend_->DetokenizeIds({id}, /*skip_special_tokens=*/false);
    return text.ok() ? *text : absl::StrCat("token_id:", id);
  }

  // The prompt's text before each choice's own.
  void Echo() {
    for (size_t c = 0; c < choices_.size(); ++c) {
      const v1::GenerateRequest& prompt = request_.prompts[choices_[c].prompt];
      std::string text = prompt.text();
      if (prompt.has_token_ids()) {
        const std::vector<int32_t> ids(prompt.token_ids().ids().begin(), prompt.token_ids().ids().end());
        text = frontend_->DetokenizeIds(ids, /*skip_special_tokens=*/false).value_or("");
      }
      choices_[c].text_bytes = text.size();
      if (request_.stream) {
        WriteEvent(Chunk(c, text, nullptr, ""));
      } else {
        choices_[c].text = std::move(text);
      }
    }
  }

  void Take(size_t c) {
    if (ended_) return;
    for (RequestEvent& event : choices_[c].request->WaitEvents(std::chrono::milliseconds(0))) {
      if (!event.error.ok()) return Fail(event.error);
      OnEvent(c, event);
      if (ended_) return;
    }
  }

  void OnEvent(size_t c, const RequestEvent& event) {
    Choice& choice = choices_[c];
    if (c % static_cast<size_t>(request_.n) == 0 && request_.n > 1 && choices_[c + 1].request == nullptr) {
      StartSiblings(c);
      if (ended_) return;
    }
    json logprobs = request_.logprobs >= 0 ? EmptyLogprobs() : json(nullptr);
    if (!logprobs.is_null()) {
      for (const v1::TokenLogprob& lp : event.logprobs) AddLogprob(lp, choice, &logprobs);
    }
    const bool last = event.finish != v1::FINISH_REASON_UNSPECIFIED;
    std::string text = event.text;
    const size_t first_call = choice.tool_calls.size();
    if (choice.tools) {
      ToolCallStream::Output read = choice.tools->Add(event.text);
      if (last) {
        ToolCallStream::Output rest = choice.tools->Finish();
        read.content += rest.content;
        for (ToolCall& call : rest.calls) read.calls.push_back(std::move(call));
      }
      text = std::move(read.content);
      for (const ToolCall& call : read.calls) choice.tool_calls.push_back(ToolCallJson(call));
    }
    if (last) {
      choice.finish_reason = FinishReasonName(event.finish);
      if (!choice.tool_calls.empty() && choice.finish_reason == "stop") choice.finish_reason = "tool_calls";
    }
    if (request_.stream) {
      // A chunk per token, its text empty when held back (an unfinished UTF-8 sequence,
      // a possible stop string, a possible tool call) or when the model has no
      // tokenizer: clients time tokens. Tool calls come whole, each in a chunk of its own
      // before the one that finishes the choice.
      const bool calls = choice.tool_calls.size() > first_call;
      if (!event.token_ids.empty() || !choice.finish_reason.empty()) {
        WriteEvent(Chunk(c, text, std::move(logprobs), calls ? "" : choice.finish_reason));
      }
      for (size_t k = first_call; k < choice.tool_calls.size(); ++k) {
        json delta = choice.tool_calls[k];
        delta["index"] = k;
        WriteEvent(Envelope(json::array({{{"index", c},
                                          {"delta", {{"tool_calls", json::array({std::move(delta)})}}},
                                          {"logprobs", nullptr},
                                          {"finish_reason", nullptr}}})));
      }
      if (calls && last) WriteEvent(Chunk(c, "", nullptr, choice.finish_reason));
    } else {
      choice.text += text;
      if (!logprobs.is_null()) {
        for (auto it = logprobs.begin(); it != logprobs.end(); ++it) {
          for (json& v : it.value()) choice.logprobs[it.key()].push_back(std::move(v));
        }
      }
    }
    if (choice.finish_reason.empty()) return;
    frontend_->Forget(*choice.request);
    if (++finished_ == choices_.size()) Finish();
  }

  // A streamed answer's event around `choices` (and usage).
  json Envelope(json choices) const {
    json envelope = {{"id", id_},
                     {"object", request_.chat ? "chat.completion.chunk" : "text_completion"},
                     {"created", created_},
                     {"model", frontend_->model_name()},
                     {"choices", std::move(choices)}};
    if (!request_.context_overflow.is_null()) envelope["context_overflow"] = request_.context_overflow;
    return envelope;
  }

  json Chunk(size_t c, const std::string& text, json logprobs, const std::string& finish_reason) const {
    json choice = {{"index", c}};
    if (request_.chat) {
      choice["delta"] = text.empty() && !finish_reason.empty() ? json::object() : json{{"content", text}};
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = std::move(logprobs);
    choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
    return Envelope(json::array({std::move(choice)}));
  }

  // Prompt tokens once per prompt (its choices share them), completion tokens of every
  // choice, and the prompt tokens served from the prefix cache.
  json Usage() const {
    int64_t prompt = 0, completion = 0, cached = 0;
    for (size_t c = 0; c < choices_.size(); ++c) {
      const v1::Usage u = choices_[c].request->usage();
      completion += u.completion_tokens();
      if (c % request_.n == 0) {
        prompt += u.prompt_tokens();
        int32_t most_cached = 0;  // the prompt's tokens the later samples found cached
        for (int j = 0; j < request_.n; ++j) {
          most_cached = std::max(most_cached, choices_[c + j].request->usage().cached_tokens());
        }
        cached += most_cached;
      }
    }
    return {{"prompt_tokens", prompt},
            {"completion_tokens", completion},
            {"total_tokens", prompt + completion},
            {"prompt_tokens_details", {{"cached_tokens", cached}}}};
  }

  void WriteEvent(const json& data) { reply_->Write(absl::StrCat("data: ", Dump(data), "\n\n")); }

  void Finish() {
    ended_ = true;
    if (request_.stream) {
      if (request_.include_usage) {
        json usage = Envelope(json::array());
        usage["usage"] = Usage();
        WriteEvent(usage);
      }
      reply_->Write("data: [DONE]\n\n");
      reply_->End();
      return;
    }
    json choices = json::array();
    for (size_t c = 0; c < choices_.size(); ++c) {
      json choice = {{"index", c}};
      if (request_.chat) {
        choice["message"] = {{"role", "assistant"}, {"content", choices_[c].text}};
        if (!choices_[c].tool_calls.empty()) {
          // OpenAI's shape: no content beside the calls but what the model wrote before them.
          if (choices_[c].text.find_first_not_of(" \t\r\n") == std::string::npos) {
            choice["message"]["content"] = nullptr;
          }
          choice["message"]["tool_calls"] = choices_[c].tool_calls;
        }
      } else {
        choice["text"] = choices_[c].text;
      }
      choice["logprobs"] = choices_[c].logprobs;
      choice["finish_reason"] = choices_[c].finish_reason;
      choices.push_back(std::move(choice));
    }
    json body = {{"id", id_},
                 {"object", request_.chat ? "chat.completion" : "text_completion"},
                 {"created", created_},
                 {"model", frontend_->model_name()},
                 {"choices", std::move(choices)},
                 {"usage", Usage()}};
    if (!request_.context_overflow.is_null()) body["context_overflow"] = request_.context_overflow;
    reply_->Send(200, "application/json", Dump(body));
  }

  // A choice failed (its group was lost with nowhere to go): the others stop too.
  void Fail(const absl::Status& error) {
    AbortAll();
    if (!request_.stream) return SendError(*reply_, error);
    const int status = HttpStatusFor(error);
    reply_->Write(absl::StrCat("data: ", ErrorJson(status, std::string(error.message()), ErrorField(error)), "\n\n"));
    reply_->Write("data: [DONE]\n\n");
    reply_->End();
  }

  void AbortAll() {
    ended_ = true;
    for (Choice& choice : choices_) {
      if (!choice.finish_reason.empty() || choice.request == nullptr) continue;  // done, or not started
      choice.request->Abort();
      frontend_->Forget(*choice.request);
    }
  }

  Frontend* const frontend_;
  const CompletionRequest request_;
  const std::string tenant_;
  const std::shared_ptr<HttpReply> reply_;
  const int64_t created_;
  const std::string id_;
  std::vector<Choice> choices_;
  size_t finished_ = 0;
  bool ended_ = false;
};

}  // namespace

void RunCompletion(Frontend* frontend, CompletionRequest request, std::string tenant, std::shared_ptr<HttpReply> reply,
                   int64_t created) {
  std::make_shared<CompletionCall>(frontend, std::move(request), std::move(tenant), std::move(reply), created)->Start();
}

}  // namespace tessera::coordinator
