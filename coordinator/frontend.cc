#include "coordinator/frontend.h"

#include <cmath>
#include <random>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"

namespace tessera::coordinator {
namespace {

constexpr int kMaxStopStrings = 16;
constexpr size_t kMaxStopBytes = 256;
constexpr int kMaxTopLogprobs = 20;
constexpr char kFieldPayload[] = "tessera.dev/field";
constexpr int32_t kDefaultMaxTokens = 16;

// Running requests are known by tenant and id: a tenant can neither abort another's
// request nor learn that an id is in use by one.
std::string ActiveKey(const std::string& tenant, const std::string& id) { return absl::StrCat(tenant, "\n", id); }

}  // namespace

std::string RandomRequestId(std::string_view prefix) {
  std::random_device random;  // libstdc++: the CPU's RDRAND, else the kernel's getrandom
  std::string id(prefix);
  for (int i = 0; i < 4; ++i) absl::StrAppend(&id, absl::Hex(random(), absl::kZeroPad8));
  return id;
}

absl::Status FieldError(const std::string& field, const std::string& message) {
  absl::Status status = absl::InvalidArgumentError(message);
  status.SetPayload(kFieldPayload, absl::Cord(field));
  return status;
}

std::string ErrorField(const absl::Status& status) {
  const auto field = status.GetPayload(kFieldPayload);  // absl::optional in Debian's Abseil
  return field ? std::string(*field) : std::string();
}

absl::Status EmbeddingOutcome(const RequestEvent& last) {
  if (!last.error.ok()) return last.error;
  switch (last.finish) {
    case v1::FINISH_REASON_ABORT: return absl::CancelledError("the embedding request was cancelled");
    case v1::FINISH_REASON_KV_CACHE_FULL:
      return FieldError("input", "the input is longer than a replica group's KV cache holds");
    default: return absl::OkStatus();
  }
}

Frontend::Frontend(FrontendOptions options, models::ModelSpec spec, std::unique_ptr<tokenizer::Tokenizer> tokenizer,
                   Cluster* cluster, RequestObserver* observer)
    : options_(std::move(options)),
      spec_(std::move(spec)),
      tokenizer_(std::move(tokenizer)),
      cluster_(cluster),
      observer_(observer) {}

absl::Status Frontend::CheckModel(const std::string& name) const {
  if (!name.empty() && name != options_.model_name) {
    return absl::NotFoundError(
        absl::StrCat("unknown model '", name, "' (this server serves '", options_.model_name, "')"));
  }
  return absl::OkStatus();
}

absl::Status Frontend::NeedTokenizer() const {
  if (tokenizer_) return absl::OkStatus();
  return absl::FailedPreconditionError("this model has no tokenizer.json: send and receive token ids");
}

absl::Status Frontend::ValidateSampling(const v1::SamplingParams& p) const {
  if (p.has_temperature() && !(std::isfinite(p.temperature()) && p.temperature() >= 0)) {
    return FieldError("temperature", "temperature must be a finite number >= 0");
  }
  if (p.has_top_p() && !(p.top_p() > 0 && p.top_p() <= 1)) return FieldError("top_p", "top_p must be in (0, 1]");
  if (p.top_k() < 0) return FieldError("top_k", "top_k must be >= 0 (0 = off)");
  if (!(p.min_p() >= 0 && p.min_p() <= 1)) return FieldError("min_p", "min_p must be in [0, 1]");
  if (p.has_repetition_penalty() && !(std::isfinite(p.repetition_penalty()) && p.repetition_penalty() > 0)) {
    return FieldError("repetition_penalty", "repetition_penalty must be > 0");
  }
  if (!(p.presence_penalty() >= -2 && p.presence_penalty() <= 2)) {
    return FieldError("presence_penalty", "presence_penalty must be in [-2, 2]");
  }
  if (!(p.frequency_penalty() >= -2 && p.frequency_penalty() <= 2)) {
    return FieldError("frequency_penalty", "frequency_penalty must be in [-2, 2]");
  }
  if (p.has_max_tokens() && p.max_tokens() < 1) return FieldError("max_tokens", "max_tokens must be >= 1");
  if (p.min_tokens() < 0) return FieldError("min_tokens", "min_tokens must be >= 0");
  if (p.has_max_tokens() && p.min_tokens() > p.max_tokens()) {
    return FieldError("min_tokens", "min_tokens must be <= max_tokens");
  }
  if (p.stop_size() > kMaxStopStrings) return FieldError("stop", absl::StrCat("at most ", kMaxStopStrings, " stop strings"));
  for (const std::string& s : p.stop()) {
    if (s.empty() || s.size() > kMaxStopBytes) {
      return FieldError("stop", absl::StrCat("stop strings must be 1 to ", kMaxStopBytes, " bytes"));
    }
  }
  for (int32_t id : p.stop_token_ids()) {
    if (id < 0 || id >= spec_.vocab_size) {
      return FieldError("stop_token_ids", absl::StrCat("stop token id ", id, " is outside the vocabulary"));
    }
  }
  if (p.top_logprobs() < 0 || p.top_logprobs() > kMaxTopLogprobs) {
    return FieldError("top_logprobs", absl::StrCat("top_logprobs must be in [0, ", kMaxTopLogprobs, "]"));
  }
  return absl::OkStatus();
}

v1::SamplingParams Frontend::ResolveSamplingDefaults(v1::SamplingParams p) {
  if (!p.has_temperature()) p.set_temperature(1.0f);
  if (!p.has_top_p()) p.set_top_p(1.0f);
  if (!p.has_repetition_penalty()) p.set_repetition_penalty(1.0f);
  if (!p.has_max_tokens()) p.set_max_tokens(kDefaultMaxTokens);
  return p;
}

absl::StatusOr<std::string> Frontend::Caller(const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  return Authenticate(it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size()));
}

absl::StatusOr<std::shared_ptr<Request>> Frontend::Admit(const v1::GenerateRequest& r, const std::string& tenant,
                                                         models::Pooling pooling) {
  std::vector<int32_t> prompt;
  if (r.has_text()) {
    if (absl::Status s = NeedTokenizer(); !s.ok()) return s;
    absl::StatusOr<std::vector<int32_t>> ids =
        tokenizer_->Encode(r.text(), r.has_add_special_tokens() ? r.add_special_tokens() : true);
    if (!ids.ok()) return ids.status();
    prompt = std::move(*ids);
  } else if (r.has_token_ids()) {
    prompt.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
    for (int32_t id : prompt) {
      if (id < 0 || id >= spec_.vocab_size) {
        return FieldError("prompt",
                          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", spec_.vocab_size, ")"));
      }
    }
  } else {
    return FieldError("prompt", "request has neither text nor token_ids");
  }
  if (prompt.empty()) return FieldError("prompt", "prompt is empty");
  ASSIGN_OR_RETURN(const models::KvRetention retention, KvRetentionOf(r));
  // A bounded KV policy runs past the context: only a full one has a length limit.
  if (!retention.bounded() && static_cast<int64_t>(prompt.size()) >= spec_.max_position_embeddings) {
    return FieldError("prompt", absl::StrCat("prompt of ", prompt.size(), " tokens leaves no room in the model's ",
                                             spec_.max_position_embeddings, "-token context"));
  }
  if (absl::Status s = ValidateSampling(r.sampling()); !s.ok()) return s;
  if (cluster_->total_waiting() >= options_.max_queue) {
    return absl::ResourceExhaustedError(absl::StrCat("queue is full (", options_.max_queue, " waiting requests)"));
  }

  const std::string id = r.request_id().empty() ? RandomRequestId("req-") : r.request_id();
  uint64_t seed = r.sampling().has_seed() ? r.sampling().seed() : std::random_device{}() * 0x100000001ull;
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = active_.find(ActiveKey(tenant, id)); it != active_.end() && !it->second.expired()) {
    return absl::AlreadyExistsError(absl::StrCat("request id '", id, "' is already running"));
  }
  std::shared_ptr<std::atomic<int>>& streams = streams_[tenant];
  if (!streams) streams = std::make_shared<std::atomic<int>>(0);
  if (options_.max_streams_per_tenant > 0 && streams->load() >= options_.max_streams_per_tenant) {
    return absl::ResourceExhaustedError(absl::StrCat(tenant.empty() ? "the server" : "tenant '" + tenant + "'",
                                                     " has ", options_.max_streams_per_tenant,
                                                     " requests running (--max-streams-per-tenant)"));
  }
  StopContext stop{retention.bounded() ? 0 : spec_.max_position_embeddings, spec_.eos_token_ids};
  auto request = std::make_shared<Request>(id, std::move(prompt), ResolveSamplingDefaults(r.sampling()), seed,
                                           r.has_skip_special_tokens() ? r.skip_special_tokens() : true, tokenizer_.get(),
                                           std::move(stop), observer_);
  // A tenant's prefixes are its own: its name roots every block hash of its requests.
  request->set_cache_salt(tenant.empty() ? r.cache_salt() : absl::StrCat(tenant, "\n", r.cache_salt()));
  request->set_tenant(tenant);
  request->set_share_weight(options_.api_keys.WeightOf(tenant));
  request->set_priority(r.priority());
  request->set_pooling(pooling);
  request->set_kv_retention(retention);
  streams->fetch_add(1);
  request->Hold(std::shared_ptr<void>(nullptr, [streams](void*) { streams->fetch_sub(1); }));
  active_[ActiveKey(tenant, id)] = request;
  return request;
}

absl::StatusOr<std::shared_ptr<Request>> Frontend::Start(const v1::GenerateRequest& r, const std::string& tenant) {
  if (absl::Status s = CheckModel(r.model()); !s.ok()) return s;
  absl::StatusOr<std::shared_ptr<Request>> request = Admit(r, tenant);
  if (!request.ok()) return request.status();
  if (absl::Status s = cluster_->Route(*request); !s.ok()) {
    Forget(**request);
    return s;
  }
  return request;
}

absl::StatusOr<models::KvRetention> Frontend::KvRetentionOf(const v1::GenerateRequest& r) const {
  const models::KvRetention& server = options_.kv_retention;
  if (!r.has_kv_policy()) return server;
  const v1::KvPolicy& p = r.kv_policy();
  const std::string policy = p.policy().empty() ? std::string(models::KvPolicyName(server)) : p.policy();
  int sinks = p.sink_tokens();
  if (sinks == 0 && policy == "sink-window") {
    sinks = server.sink_tokens > 0 ? server.sink_tokens : models::kDefaultSinkTokens;
  }
  const int window = p.window() != 0 ? p.window() : policy == "full" ? 0 : server.window;
  absl::StatusOr<models::KvRetention> retention = models::ParseKvPolicy(policy, sinks, window);
  if (!retention.ok()) return FieldError("kv_policy", std::string(retention.status().message()));
  if (retention->bounded() && spec_.positions != models::PositionKind::kRope) {
    return FieldError("kv_policy", "a window or sink-window KV policy needs a rotary-position model");
  }
  return retention;
}

void Frontend::Forget(const Request& request) {
  std::lock_guard<std::mutex> lock(mu_);
  active_.erase(ActiveKey(request.tenant(), request.id()));
}

absl::StatusOr<std::vector<std::shared_ptr<Request>>> Frontend::StartEmbeddings(const v1::EmbedRequest& r,
                                                                                const std::string& tenant) {
  if (absl::Status s = CheckModel(r.model()); !s.ok()) return s;
  if (r.inputs().empty()) return FieldError("input", "no input to embed");
  if (r.inputs_size() > options_.max_queue) {
    return FieldError("input", absl::StrCat("at most ", options_.max_queue, " inputs (--max-queue)"));
  }
  std::vector<std::shared_ptr<Request>> started;
  const auto fail = [&](size_t input, const absl::Status& status) {
    for (const std::shared_ptr<Request>& request : started) {
      request->Abort();
      Forget(*request);
    }
    // The input's errors concern the API's `input`, whichever part of it they name.
    absl::Status named(status.code(), absl::StrCat("input[", input, "]: ", status.message()));
    if (!ErrorField(status).empty()) named.SetPayload(kFieldPayload, absl::Cord("input"));
    return named;
  };
  for (int i = 0; i < r.inputs_size(); ++i) {
    const v1::EmbedInput& input = r.inputs(i);
    v1::GenerateRequest g;
    if (input.has_text()) g.set_text(input.text());
    if (input.has_token_ids()) *g.mutable_token_ids() = input.token_ids();
    g.set_priority(r.priority());
    g.mutable_sampling()->set_max_tokens(1);  // routing's estimate of its work: its prompt
    absl::StatusOr<std::shared_ptr<Request>> request = Admit(g, tenant, options_.embedding_pooling);
    if (!request.ok()) return fail(i, request.status());
    started.push_back(*request);
    if (absl::Status s = cluster_->Route(*request); !s.ok()) return fail(i, s);
  }
  return started;
}

grpc::Status Frontend::Embed(grpc::ServerContext* context, const v1::EmbedRequest* r, v1::EmbedResponse* response) {
  absl::StatusOr<std::string> tenant = Caller(*context);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<std::vector<std::shared_ptr<Request>>> started = StartEmbeddings(*r, *tenant);
  if (!started.ok()) return ToGrpc(started.status());
  grpc::Status result = grpc::Status::OK;
  for (const std::shared_ptr<Request>& request : *started) {
    v1::Embedding* embedding = response->add_embeddings();
    bool done = !result.ok();  // after a failure the rest are only aborted
    while (!done) {
      if (context->IsCancelled()) request->Abort();
      for (RequestEvent& e : request->WaitEvents(std::chrono::milliseconds(50))) {
        done = !e.error.ok() || e.finish != v1::FINISH_REASON_UNSPECIFIED;
        if (!done) continue;
        if (absl::Status s = EmbeddingOutcome(e); !s.ok()) result = ToGrpc(s);
        embedding->mutable_values()->Add(e.embedding.begin(), e.embedding.end());
      }
    }
    embedding->set_prompt_tokens(static_cast<int32_t>(request->prompt().size()));
    response->set_prompt_tokens(response->prompt_tokens() + embedding->prompt_tokens());
    if (!result.ok()) request->Abort();
    Forget(*request);
  }
  return result;
}

grpc::Status Frontend::Generate(grpc::ServerContext* context, const v1::GenerateRequest* r,
                                grpc::ServerWriter<v1::GenerateResponse>* writer) {
  absl::StatusOr<std::string> tenant = Caller(*context);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  absl::StatusOr<std::shared_ptr<Request>> started = Start(*r, *tenant);
  if (!started.ok()) return ToGrpc(started.status());
  std::shared_ptr<Request> request = *started;
  grpc::Status result = grpc::Status::OK;
  bool done = false;
  while (!done) {
    if (context->IsCancelled()) request->Abort();
    // Events wake this wait at once (a condition variable); the bound is only how often
    // a client's cancellation is noticed, as the synchronous API has no callback for it.
    for (RequestEvent& e : request->WaitEvents(std::chrono::milliseconds(50))) {
      if (!e.error.ok()) {
        result = ToGrpc(e.error);
        done = true;
        break;
      }
      v1::GenerateResponse msg;
      msg.set_request_id(request->id());
      msg.mutable_token_ids()->Add(e.token_ids.begin(), e.token_ids.end());
      msg.set_text(std::move(e.text));
      for (auto& lp : e.logprobs) *msg.add_logprobs() = std::move(lp);
      if (e.finish != v1::FINISH_REASON_UNSPECIFIED) {
        msg.set_finish_reason(e.finish);
        *msg.mutable_usage() = request->usage();
        done = true;
      }
      if (!writer->Write(msg)) request->Abort();  // the client went away
      if (done) break;
    }
  }
  Forget(*request);
  return result;
}

grpc::Status Frontend::Abort(grpc::ServerContext* context, const v1::AbortRequest* r, v1::AbortResponse*) {
  absl::StatusOr<std::string> tenant = Caller(*context);
  if (!tenant.ok()) return ToGrpc(tenant.status());
  std::lock_guard<std::mutex> lock(mu_);
  auto it = active_.find(ActiveKey(*tenant, r->request_id()));
  std::shared_ptr<Request> request = it == active_.end() ? nullptr : it->second.lock();
  // Another tenant's request is as good as absent (ActiveKey): its ids are not revealed.
  if (!request) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("no running request '", r->request_id(), "'"));
  }
  request->Abort();
  return grpc::Status::OK;
}

absl::StatusOr<std::vector<int32_t>> Frontend::TokenizeText(const std::string& text, bool add_special_tokens) const {
  if (absl::Status s = NeedTokenizer(); !s.ok()) return s;
  return tokenizer_->Encode(text, add_special_tokens);
}

absl::StatusOr<std::string> Frontend::DetokenizeIds(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  if (absl::Status s = NeedTokenizer(); !s.ok()) return s;
  absl::StatusOr<std::string> text = tokenizer_->Decode(ids, skip_special_tokens);
  if (absl::IsInvalidArgument(text.status())) return FieldError("tokens", std::string(text.status().message()));
  return text;
}

bool Frontend::Ready() const {
  for (const v1::GroupInfo& g : cluster_->Groups()) {
    if (g.state() == "READY") return true;
  }
  return false;
}

grpc::Status Frontend::Tokenize(grpc::ServerContext* context, const v1::TokenizeRequest* r, v1::TokenizeResponse* response) {
  if (absl::StatusOr<std::string> tenant = Caller(*context); !tenant.ok()) return ToGrpc(tenant.status());
  if (absl::Status s = CheckModel(r->model()); !s.ok()) return ToGrpc(s);
  auto ids = TokenizeText(r->text(), r->has_add_special_tokens() ? r->add_special_tokens() : true);
  if (!ids.ok()) return ToGrpc(ids.status());
  response->mutable_ids()->Add(ids->begin(), ids->end());
  return grpc::Status::OK;
}

grpc::Status Frontend::Detokenize(grpc::ServerContext* context, const v1::DetokenizeRequest* r,
                                  v1::DetokenizeResponse* response) {
  if (absl::StatusOr<std::string> tenant = Caller(*context); !tenant.ok()) return ToGrpc(tenant.status());
  if (absl::Status s = CheckModel(r->model()); !s.ok()) return ToGrpc(s);
  std::vector<int32_t> ids(r->ids().begin(), r->ids().end());
  auto text = DetokenizeIds(ids, r->has_skip_special_tokens() ? r->skip_special_tokens() : true);
  if (!text.ok()) return ToGrpc(text.status());
  response->set_text(*text);
  return grpc::Status::OK;
}

grpc::Status Frontend::GetModelInfo(grpc::ServerContext* context, const v1::GetModelInfoRequest* r, v1::ModelInfo* info) {
  if (absl::StatusOr<std::string> tenant = Caller(*context); !tenant.ok()) return ToGrpc(tenant.status());
  if (absl::Status s = CheckModel(r->model()); !s.ok()) return ToGrpc(s);
  info->set_name(options_.model_name);
  info->set_family(spec_.family);
  info->set_architecture(spec_.architecture);
  info->set_max_context(spec_.max_position_embeddings);
  info->set_vocab_size(spec_.vocab_size);
  info->set_tensor_parallel(options_.tensor_parallel);
  info->set_expert_parallel(options_.expert_parallel);
  info->mutable_eos_token_ids()->Add(spec_.eos_token_ids.begin(), spec_.eos_token_ids.end());
  return grpc::Status::OK;
}

grpc::Status Frontend::GetServerInfo(grpc::ServerContext* context, const v1::GetServerInfoRequest*, v1::ServerInfo* info) {
  if (absl::StatusOr<std::string> tenant = Caller(*context); !tenant.ok()) return ToGrpc(tenant.status());
  *info = Info();
  return grpc::Status::OK;
}

v1::ServerInfo Frontend::Info() const {
  v1::ServerInfo info;
  info.set_model(options_.model_name);
  for (auto& g : cluster_->Groups()) *info.add_groups() = std::move(g);
  *info.mutable_kv_index() = cluster_->IndexInfo();
  info.set_registered_workers(cluster_->registered_workers());
  info.set_queued_requests(cluster_->total_waiting());
  info.set_batch_invariant(options_.batch_invariant);
  v1::KvPolicy* policy = info.mutable_kv_policy();
  policy->set_policy(std::string(models::KvPolicyName(options_.kv_retention)));
  policy->set_sink_tokens(options_.kv_retention.sink_tokens);
  policy->set_window(options_.kv_retention.window);
  const auto [fetched, sent] = cluster_->kv_data_plane_bytes();
  info.set_kv_bytes_fetched(fetched);
  info.set_kv_bytes_sent(sent);
  return info;
}

}  // namespace tessera::coordinator
