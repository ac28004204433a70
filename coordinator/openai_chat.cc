#include "coordinator/openai_chat.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "coordinator/openai_api.h"
#include "coordinator/openai_completion.h"

namespace tessera::coordinator {
namespace {

using nlohmann::ordered_json;

// At most this many tokens of summary; and at most a quarter of the room the
// conversation has.
constexpr int kMaxSummaryTokens = 128;
// What the summary's label and separators may take besides it.
constexpr int kSummaryOverhead = 24;

class ChatCall : public std::enable_shared_from_this<ChatCall> {
 public:
  ChatCall(Frontend* frontend, const ChatSettings& settings, ChatRequest request, std::string tenant,
           std::shared_ptr<HttpReply> reply, int64_t created)
      : frontend_(frontend),
        settings_(settings),
        request_(std::move(request)),
        conversation_(request_.messages),
        tenant_(std::move(tenant)),
        reply_(std::move(reply)),
        created_(created) {}

  // On the connection's strand, as every method below.
  void Start() {
    if (settings_.chat == nullptr) {
      return SendError(*reply_, FieldError("messages", "this model has no chat template (tokenizer_config.json's "
                                                       "chat_template): use /v1/completions"));
    }
    if (!request_.tools.is_null()) {
      if (settings_.tool_calls == ToolCallFormat::kNone && request_.call_tools) {
        return SendError(*reply_, FieldError("tools", "this server reads no tool calls: start it with "
                                                      "--tool-call-parser (hermes or llama3_json), or send "
                                                      "tool_choice \"none\""));
      }
      variables_["tools"] = request_.tools;
      if (request_.call_tools) request_.completion.tool_calls = settings_.tool_calls;
    }
    const ContextOverflow policy = request_.context_overflow.value_or(settings_.overflow);
    const int32_t max_tokens =
        Frontend::ResolveSamplingDefaults(request_.completion.prompts[0].sampling()).max_tokens();
    room_ = static_cast<int64_t>(frontend_->spec().max_position_embeddings) - max_tokens;

    absl::StatusOr<int64_t> tokens = Tokens(request_.messages);
    if (!tokens.ok()) return SendError(*reply_, tokens.status());
    // Under `error` the frontend refuses what leaves the answer no room, as always; a
    // bounded KV policy has no context to overflow.
    const absl::StatusOr<models::KvRetention> kept = frontend_->KvRetentionOf(request_.completion.prompts[0]);
    if (*tokens <= room_ || policy == ContextOverflow::kError || (kept.ok() && kept->bounded())) {
      return Run(request_.messages, nullptr);
    }

    const bool summarize = policy == ContextOverflow::kSummarize;
    summary_tokens_ = static_cast<int>(std::clamp<int64_t>(room_ / 4, 1, kMaxSummaryTokens));
    absl::StatusOr<size_t> drop = FewestToDrop(summarize ? summary_tokens_ + kSummaryOverhead : 0, *tokens);
    if (!drop.ok()) return SendError(*reply_, drop.status());
    drop_ = *drop;
    if (!summarize) {
      return Run(conversation_.Without(drop_, ""), {{"policy", "truncate"}, {"turns_removed", drop_}});
    }
    if (absl::Status s = StartSummary(); !s.ok()) return SendError(*reply_, s);
  }

 private:
  absl::StatusOr<std::string> Render(const ordered_json& messages) const {
    absl::StatusOr<std::string> prompt =
        settings_.chat->Apply(messages, request_.add_generation_prompt, variables_);
    if (!prompt.ok()) return FieldError("messages", std::string(prompt.status().message()));
    return prompt;
  }

  absl::StatusOr<int64_t> Tokens(const ordered_json& messages) const {
    absl::StatusOr<std::string> prompt = Render(messages);
    if (!prompt.ok()) return prompt.status();
    absl::StatusOr<std::vector<int32_t>> ids = frontend_->TokenizeText(*prompt, /*add_special_tokens=*/false);
    if (!ids.ok()) return ids.status();
    return static_cast<int64_t>(ids->size());
  }

  // The fewest oldest turns whose removal leaves the rest, and `reserve` tokens more,
  // within the room; the last turn is always kept.
  absl::StatusOr<size_t> FewestToDrop(int64_t reserve, int64_t whole) const {
    int64_t tokens = whole;
    for (size_t drop = 1; drop < conversation_.num_turns(); ++drop) {
      absl::StatusOr<int64_t> t = Tokens(conversation_.Without(drop, ""));
      if (!t.ok()) return t.status();
      tokens = *t;
      if (tokens + reserve <= room_) return drop;
    }
    return FieldError("messages", absl::StrCat("the conversation does not fit the model's context even with only its "
                                               "system messages and last turn (", tokens, " prompt tokens",
                                               reserve > 0 ? absl::StrCat(" and a summary of ", reserve) : "",
                                               "; ", room_, " fit beside max_tokens)"));
  }

  // Asks the model to summarise the turns to drop; OnSummary goes on.
  absl::Status StartSummary() {
    std::string transcript = conversation_.Transcript(drop_);
    // The summary request must fit too: its oldest text goes first.
    std::string prompt;
    while (true) {
      absl::StatusOr<std::string> rendered = Render(SummaryRequestMessages(transcript));
      if (!rendered.ok()) return rendered.status();
      absl::StatusOr<std::vector<int32_t>> ids = frontend_->TokenizeText(*rendered, false);
      if (!ids.ok()) return ids.status();
      if (static_cast<int64_t>(ids->size()) + summary_tokens_ < frontend_->spec().max_position_embeddings) {
        prompt = std::move(*rendered);
        break;
      }
      if (transcript.size() < 16) return absl::InvalidArgumentError("the turns to summarise do not fit the context");
      transcript.erase(0, transcript.size() / 4);
    }
    v1::GenerateRequest g;
    g.set_text(prompt);
    g.set_add_special_tokens(false);  // the template writes them
    g.set_priority(request_.completion.priority);
    g.mutable_sampling()->set_temperature(0);
    g.mutable_sampling()->set_max_tokens(summary_tokens_);
    absl::StatusOr<std::shared_ptr<Request>> started = frontend_->Start(g, tenant_);
    if (!started.ok()) return started.status();
    summary_request_ = std::move(*started);
    reply_->OnClose([self = shared_from_this()] {
      if (self->summary_request_) {
        self->summary_request_->Abort();
        self->frontend_->Forget(*self->summary_request_);
        self->summary_request_ = nullptr;
      }
    });
    summary_request_->SetListener([weak = weak_from_this(), reply = reply_] {
      reply->Post([weak] {
        if (auto self = weak.lock()) self->TakeSummary();
      });
    });
    TakeSummary();
    return absl::OkStatus();
  }

  void TakeSummary() {
    if (summary_request_ == nullptr) return;
    for (RequestEvent& e : summary_request_->WaitEvents(std::chrono::milliseconds(0))) {
      if (!e.error.ok()) return EndSummary(e.error);
      summary_ += e.text;
      if (e.finish != v1::FINISH_REASON_UNSPECIFIED) return EndSummary(absl::OkStatus());
    }
  }

  void EndSummary(const absl::Status& status) {
    frontend_->Forget(*summary_request_);
    summary_request_ = nullptr;
    if (!status.ok()) return SendError(*reply_, status);
    const std::string summary(absl::StripAsciiWhitespace(summary_));
    // The summary took more than was set aside: more turns go.
    for (size_t drop = drop_; drop < conversation_.num_turns(); ++drop) {
      ordered_json messages = conversation_.Without(drop, summary);
      absl::StatusOr<int64_t> tokens = Tokens(messages);
      if (!tokens.ok()) return SendError(*reply_, tokens.status());
      if (*tokens <= room_) {
        return Run(messages, {{"policy", "summarize"}, {"turns_removed", drop}, {"summary", summary}});
      }
    }
    SendError(*reply_, FieldError("messages", "the conversation does not fit the model's context with its summary"));
  }

  // The completion of `messages`, telling the client how the conversation was fitted
  // (`note`, null when it fitted as it was).
  void Run(const ordered_json& messages, nlohmann::json note) {
    absl::StatusOr<std::string> prompt = Render(messages);
    if (!prompt.ok()) return SendError(*reply_, prompt.status());
    request_.completion.prompts[0].set_text(*prompt);
    request_.completion.context_overflow = std::move(note);
    RunCompletion(frontend_, std::move(request_.completion), tenant_, reply_, created_);
  }

  Frontend* const frontend_;
  const ChatSettings settings_;
  ChatRequest request_;
  const Conversation conversation_;
  const std::string tenant_;
  const std::shared_ptr<HttpReply> reply_;
  const int64_t created_;
  ordered_json variables_ = ordered_json::object();  // the template's besides messages
  int64_t room_ = 0;         // prompt tokens that fit beside max_tokens
  int summary_tokens_ = 0;   // the summary's max_tokens
  size_t drop_ = 0;          // turns the summary replaces
  std::shared_ptr<Request> summary_request_;  // while the summary is being generated
  std::string summary_;
};

}  // namespace

void RunChat(Frontend* frontend, const ChatSettings& settings, ChatRequest request, std::string tenant,
             std::shared_ptr<HttpReply> reply, int64_t created) {
  std::make_shared<ChatCall>(frontend, settings, std::move(request), std::move(tenant), std::move(reply), created)
      ->Start();
}

}  // namespace tessera::coordinator
