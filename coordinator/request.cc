#include "coordinator/request.h"

#include <algorithm>

namespace tessera::coordinator {
namespace {

double Seconds(std::chrono::steady_clock::duration d) { return std::chrono::duration<double>(d).count(); }

bool Contains(const std::vector<int32_t>& v, int32_t x) { return std::find(v.begin(), v.end(), x) != v.end(); }

// Largest n <= text.size() that does not cut a UTF-8 character.
size_t CharBoundary(const std::string& text, size_t n) {
  while (n > 0 && n < text.size() && (static_cast<unsigned char>(text[n]) & 0xc0) == 0x80) --n;
  return n;
}
}  // namespace

Request::Request(std::string id, std::vector<int32_t> prompt, const v1::SamplingParams& sampling, uint64_t seed,
                 bool skip_special_tokens, const tokenizer::Tokenizer* tokenizer, StopContext stop,
                 RequestObserver* observer)
    : id_(std::move(id)),
      prompt_(std::move(prompt)),
      sampling_(sampling),
      seed_(seed),
      stop_(std::move(stop)),
      max_tokens_(sampling.max_tokens()),
      observer_(observer) {
  if (tokenizer != nullptr) decoder_.emplace(*tokenizer, skip_special_tokens);
  for (const std::string& s : sampling_.stop()) longest_stop_ = std::max(longest_stop_, s.size());
}

std::string FinishReasonName(v1::FinishReason reason) {
  switch (reason) {
    case v1::FINISH_REASON_LENGTH:
    case v1::FINISH_REASON_KV_CACHE_FULL:  // OpenAI's clients know no other word for it
      return "length";
    case v1::FINISH_REASON_ABORT:
      return "abort";
    default:
      return "stop";
  }
}

void Request::set_cached_tokens(int32_t n) {
  int32_t unset = -1;
  if (cached_tokens_.compare_exchange_strong(unset, n) && observer_ != nullptr) {
    observer_->OnQueued(Seconds(Clock::now() - created_));
  }
}

int64_t Request::remaining_work() const {
  return static_cast<int64_t>(prompt_.size()) + max_tokens_ - completion_tokens_.load();
}

std::string Request::TakeStableText(bool final) {
  size_t keep = final || longest_stop_ == 0 ? 0 : longest_stop_ - 1;
  size_t n = pending_text_.size() > keep ? pending_text_.size() - keep : 0;
  n = CharBoundary(pending_text_, n);
  std::string out = pending_text_.substr(0, n);
  pending_text_.erase(0, n);
  return out;
}

bool Request::OnToken(int32_t token, const v1::TokenLogprob* logprob) {
  if (finished_) return true;
  if (observer_ != nullptr) {
    const Clock::time_point now = Clock::now();
    if (generated_.empty()) {
      time_to_first_token_ = Seconds(now - created_);
      observer_->OnFirstToken(time_to_first_token_);
    } else {
      observer_->OnNextToken(Seconds(now - last_token_));
    }
    last_token_ = now;
  }
  generated_.push_back(token);
  RequestEvent event;
  event.token_ids.push_back(token);
  if (logprob) event.logprobs.push_back(*logprob);

  const int32_t n = static_cast<int32_t>(generated_.size());
  const bool may_stop = n >= sampling_.min_tokens();
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  if (may_stop && !sampling_.ignore_eos() && Contains(stop_.eos_token_ids, token)) {
    reason = v1::FINISH_REASON_EOS;
  } else if (may_stop && std::find(sampling_.stop_token_ids().begin(), sampling_.stop_token_ids().end(), token) !=
                             sampling_.stop_token_ids().end()) {
    reason = v1::FINISH_REASON_STOP;
  } else if (n >= max_tokens_ ||
             (stop_.max_context > 0 && static_cast<int32_t>(prompt_.size()) + n >= stop_.max_context)) {
    reason = v1::FINISH_REASON_LENGTH;
  }
  if (reason != v1::FINISH_REASON_UNSPECIFIED) {
    Finish(reason, &event);
    return true;
  }
  if (!Push(std::move(event), n)) {
    Leave();
    return true;
  }
  return false;
}

void Request::Finish(v1::FinishReason reason, RequestEvent* event) {
  event->finish = reason;
  if (!Push(std::move(*event), static_cast<int32_t>(generated_.size()))) {
    Leave();
    return;
  }
  // A stop string the consumer finds in this last token's text is what the client
  // sees; the summary keeps the token-level reason (both end the request here).
  ReportFinished(reason);
}

void Request::ReportFinished(v1::FinishReason reason) {
  if (observer_ == nullptr) return;
  observer_->OnFinished({id_, reason, static_cast<int32_t>(prompt_.size()), completion_tokens_,
                         std::max(0, cached_tokens_.load()), time_to_first_token_, Seconds(Clock::now() - created_)});
}

void Request::OnEmbedding(std::vector<float> embedding) {
  if (finished_) return;
  RequestEvent event;
  event.embedding = std::move(embedding);
  Finish(v1::FINISH_REASON_STOP, &event);
}

void Request::Fail(const absl::Status& status) {
  RequestEvent event;
  event.error = status;
  Push(std::move(event), static_cast<int32_t>(generated_.size()));
}

void Request::Leave() {
  if (finished_) return;
  if (stop_found_) {
    // The consumer has delivered the text up to the stop string and its finish reason.
    finished_ = true;
    ReportFinished(v1::FINISH_REASON_STOP_STRING);
    return;
  }
  RequestEvent event;
  Finish(v1::FINISH_REASON_ABORT, &event);
}

void Request::FinishOutOfCache() {
  if (finished_) return;
  RequestEvent event;
  Finish(v1::FINISH_REASON_KV_CACHE_FULL, &event);
}

bool Request::Push(RequestEvent event, int32_t completion_tokens) {
  std::function<void()> listener;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_found_ || finished_) return false;
    completion_tokens_ = completion_tokens;
    if (event.finish != v1::FINISH_REASON_UNSPECIFIED || !event.error.ok()) finished_ = true;
    events_.push_back(std::move(event));
    listener = listener_;
  }
  cv_.notify_one();
  if (listener) listener();
  return true;
}

void Request::SetListener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

std::vector<RequestEvent> Request::WaitEvents(std::chrono::milliseconds timeout) {
  std::deque<RequestEvent> queued;
  {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return !events_.empty(); });
    queued.swap(events_);
  }
  std::vector<RequestEvent> out;
  for (RequestEvent& event : queued) {
    if (delivered_final_) break;
    if (event.error.ok()) AddText(&event);
    delivered_final_ = event.finish != v1::FINISH_REASON_UNSPECIFIED || !event.error.ok();
    out.push_back(std::move(event));
  }
  return out;
}

void Request::AddText(RequestEvent* event) {
  for (int32_t token : event->token_ids) {
    ++consumed_tokens_;
    if (!decoder_) continue;
    absl::StatusOr<std::string> piece = decoder_->Add(token);
    if (piece.ok()) pending_text_ += *piece;
  }
  if (!event->token_ids.empty() && consumed_tokens_ >= sampling_.min_tokens() && longest_stop_ > 0) {
    size_t first = std::string::npos;
    for (const std::string& s : sampling_.stop()) first = std::min(first, pending_text_.find(s));
    if (first != std::string::npos) {
      event->text = pending_text_.substr(0, first);
      pending_text_.clear();
      event->finish = v1::FINISH_REASON_STOP_STRING;
      StopAt(consumed_tokens_);
      return;
    }
  }
  const bool final = event->finish != v1::FINISH_REASON_UNSPECIFIED;
  if (final && decoder_) {
    absl::StatusOr<std::string> rest = decoder_->Finish();
    if (rest.ok()) pending_text_ += *rest;
  }
  event->text = TakeStableText(final);
}

void Request::StopAt(int32_t completion_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  completion_tokens_ = completion_tokens;  // what the client received
  if (!finished_) stop_found_ = true;      // else the producer has ended it already
}

v1::Usage Request::usage() const {
  v1::Usage u;
  u.set_prompt_tokens(static_cast<int32_t>(prompt_.size()));
  u.set_completion_tokens(completion_tokens_);
  u.set_cached_tokens(std::max(0, cached_tokens_.load()));
  return u;
}

}  // namespace tessera::coordinator
