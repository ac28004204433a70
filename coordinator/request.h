// Request: one generation from admission to its final message.
//
// The producer side (OnToken, Finish*, Leave) is driven by the replica group that runs
// the request, one group at a time; it only queues token ids, logprobs and the
// token-level finish (EOS, stop token, length), so the group's step thread never
// detokenizes. The consumer side (the Generate handler, the HTTP front end) takes events
// with WaitEvents, which turns them into text on the consumer's thread: incremental
// detokenization, and stop strings held back until they cannot match. A stop string
// found there ends the stream at once and tells the producer to let the sequence go
// (the tokens it sampled meanwhile are dropped). Abort may come from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/block_hash.h"
#include "models/kv_retention.h"
#include "models/pooling.h"
#include "tessera/v1/tessera.pb.h"
#include "tokenizer/incremental_decoder.h"

namespace tessera::coordinator {

struct RequestEvent {
  std::vector<int32_t> token_ids;
  std::string text;
  std::vector<v1::TokenLogprob> logprobs;
  v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;  // set on the last event
  std::vector<float> embedding;                              // an embedding request's, on its last event
  absl::Status error;                                        // set instead, on failure
};

// OpenAI's name for how a request ended: "stop" (EOS, a stop token or string),
// "length" (max tokens, the context, or a full KV cache), "abort".
std::string FinishReasonName(v1::FinishReason reason);

// How a request ended, for metrics and the request log.
struct RequestSummary {
  std::string id;
  v1::FinishReason reason = v1::FINISH_REASON_UNSPECIFIED;
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  int32_t cached_tokens = 0;        // prompt tokens found in the prefix cache
  double time_to_first_token = -1;  // seconds; -1 when no token came
  double seconds = 0;               // from arrival to the end
};

// Told of each request's milestones, on the producer's thread (ServingMetrics,
// RequestLog).
class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  // From creation to its first admission into a batch.
  virtual void OnQueued(double seconds) = 0;
  // From creation to the first generated token, then between consecutive tokens.
  virtual void OnFirstToken(double seconds) = 0;
  virtual void OnNextToken(double seconds) = 0;
  // The request ended (not on an error).
  virtual void OnFinished(const RequestSummary& summary) = 0;
};

// Tells each of several observers, in order.
class RequestObservers final : public RequestObserver {
 public:
  explicit RequestObservers(std::vector<RequestObserver*> observers) : observers_(std::move(observers)) {}
  void OnQueued(double seconds) override {
    for (RequestObserver* o : observers_) o->OnQueued(seconds);
  }
  void OnFirstToken(double seconds) override {
    for (RequestObserver* o : observers_) o->OnFirstToken(seconds);
  }
  void OnNextToken(double seconds) override {
    for (RequestObserver* o : observers_) o->OnNextToken(seconds);
  }
  void OnFinished(const RequestSummary& summary) override {
    for (RequestObserver* o : observers_) o->OnFinished(summary);
  }

 private:
  const std::vector<RequestObserver*> observers_;
};

// Model facts a request needs to decide when to stop.
struct StopContext {
  int32_t max_context = 0;  // 0: none (a bounded KV policy runs past the context)
  std::vector<int32_t> eos_token_ids;
};

class Request {
 public:
  // `sampling` has its defaults resolved (the frontend does it: ResolveSamplingDefaults).
  // `tokenizer` may be null (a model served without tokenizer.json): no text then.
  // `observer` (may be null) must outlive the request.
  Request(std::string id, std::vector<int32_t> prompt, const v1::SamplingParams& sampling, uint64_t seed,
          bool skip_special_tokens, const tokenizer::Tokenizer* tokenizer, StopContext stop,
          RequestObserver* observer = nullptr);

  const std::string& id() const { return id_; }
  const std::vector<int32_t>& prompt() const { return prompt_; }
  const v1::SamplingParams& sampling() const { return sampling_; }
  const std::string& cache_salt() const { return cache_salt_; }
  void set_cache_salt(std::string salt) { cache_salt_ = std::move(salt); }
  // The API key's tenant that started the request ("" without keys).
  const std::string& tenant() const { return tenant_; }
  void set_tenant(std::string tenant) { tenant_ = std::move(tenant); }
  // Its tenant's weight in the fair share of a group (waiting_queue.h; --api-key-file).
  double share_weight() const { return share_weight_; }
  void set_share_weight(double weight) { share_weight_ = weight; }
  // An embedding request (Frontend::StartEmbeddings) computes its prompt and pools
  // its final hidden states instead of generating; kNone for a generation.
  models::Pooling pooling() const { return pooling_; }
  void set_pooling(models::Pooling pooling) { pooling_ = pooling; }
  // What its sequence keeps of its KV cache (--kv-policy, or the request's own).
  const models::KvRetention& kv_retention() const { return kv_retention_; }
  void set_kv_retention(models::KvRetention retention) { kv_retention_ = retention; }
  // Lower goes sooner, and may take a running lower-priority request's place.
  int32_t priority() const { return priority_; }
  void set_priority(int32_t priority) { priority_ = priority; }
  // Something released when the request is destroyed (its tenant's stream count).
  void Hold(std::shared_ptr<void> held) { held_ = std::move(held); }
  // Called at every admission into a batch; the first one's prefix-cache hit is the
  // request's (for usage) and ends its queue time.
  void set_cached_tokens(int32_t n);
  uint64_t seed() const { return seed_; }
  // The prefix block hashes the router computed (prompt and generated tokens at routing
  // time), carried to the scheduler that admits the request; `tokens` says how many
  // tokens they were computed over, so a request that has grown since is rehashed.
  void set_prefix_hashes(std::vector<kvstore::BlockHash> hashes) {
    prefix_hashes_ = std::move(hashes);
    prefix_hashes_tokens_ = prompt_.size() + generated_.size();
  }
  const std::vector<kvstore::BlockHash>& prefix_hashes() const { return prefix_hashes_; }
  size_t prefix_hashes_tokens() const { return prefix_hashes_tokens_; }
  // Producer thread only: the tokens generated so far (a recompute replays them).
  const std::vector<int32_t>& generated() const { return generated_; }
  // Upper bound on the tokens this request will still compute (for routing).
  int64_t remaining_work() const;

  // Producer: one sampled token. Returns true when the request is done: finished with
  // this token, or the consumer found a stop string (the token is dropped then).
  bool OnToken(int32_t token, const v1::TokenLogprob* logprob);
  // Producer: an embedding request's result; ends it (FINISH_REASON_STOP).
  void OnEmbedding(std::vector<float> embedding);
  // Producer: ends the request with an error (e.g. UNAVAILABLE).
  void Fail(const absl::Status& status);
  // Producer: the KV pool cannot hold this sequence any longer.
  void FinishOutOfCache();
  bool finished() const { return finished_; }

  // Any thread: ask for the request to stop; its group ends it with ABORT.
  void Abort() { aborted_ = true; }
  bool aborted() const { return aborted_; }
  // The request should leave its group: aborted, or its consumer found a stop string.
  bool leaving() const { return aborted_ || stop_found_; }
  // Producer: ends a leaving request (ABORT, or the stop string already delivered).
  void Leave();

  // Consumer (one thread at a time): waits up to `timeout` for events; returns whatever
  // is queued, with its text. Nothing follows the event that carries the finish reason
  // or an error.
  std::vector<RequestEvent> WaitEvents(std::chrono::milliseconds timeout);
  // Consumer that does not block (the HTTP front end): `listener` runs on the
  // producer's thread after each event is queued and must only schedule the taking
  // (WaitEvents with a zero timeout). Events queued before it was set are waiting.
  void SetListener(std::function<void()> listener);

  v1::Usage usage() const;

 private:
  // Queues `event` and counts `completion_tokens`, unless the consumer already found a
  // stop string: returns false then and queues nothing.
  bool Push(RequestEvent event, int32_t completion_tokens);
  void Finish(v1::FinishReason reason, RequestEvent* event);
  void ReportFinished(v1::FinishReason reason);
  // Consumer: the event's text; sets its finish reason when a stop string ends it.
  void AddText(RequestEvent* event);
  // Consumer: a stop string ended the text after `completion_tokens` tokens.
  void StopAt(int32_t completion_tokens);
  std::string TakeStableText(bool final);

  const std::string id_;
  const std::vector<int32_t> prompt_;
  const v1::SamplingParams sampling_;
  const uint64_t seed_;
  const StopContext stop_;
  const int32_t max_tokens_;
  size_t longest_stop_ = 0;
  RequestObserver* const observer_;
  using Clock = std::chrono::steady_clock;
  const Clock::time_point created_ = Clock::now();
  Clock::time_point last_token_;  // producer state
  double time_to_first_token_ = -1;  // producer state

  // Producer state.
  std::vector<int32_t> generated_;
  // Consumer state.
  std::optional<tokenizer::IncrementalDecoder> decoder_;
  std::string pending_text_;  // decoded but held back (a stop string might start here)
  int32_t consumed_tokens_ = 0;
  bool delivered_final_ = false;

  std::atomic<bool> finished_{false};    // set under mu_ with the final event
  std::atomic<bool> stop_found_{false};  // set under mu_ by the consumer
  std::atomic<bool> aborted_{false};
  std::atomic<int32_t> completion_tokens_{0};
  std::atomic<int32_t> cached_tokens_{-1};
  std::string cache_salt_;
  std::string tenant_;
  double share_weight_ = 1;
  int32_t priority_ = 0;
  models::Pooling pooling_ = models::Pooling::kNone;
  models::KvRetention kv_retention_;
  std::shared_ptr<void> held_;
  // Set by the router before the request is queued; read by the scheduler after.
  std::vector<kvstore::BlockHash> prefix_hashes_;
  size_t prefix_hashes_tokens_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<RequestEvent> events_;  // guarded by mu_
  std::function<void()> listener_;   // guarded by mu_
};

}  // namespace tessera::coordinator
