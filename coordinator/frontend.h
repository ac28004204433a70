// Frontend: the public tessera.v1.TesseraService service. Validates and tokenizes requests,
// routes them through the cluster, and streams their events back; maps every error
// to its gRPC status code (see proto/tessera/v1/tessera.proto).
//
// Thread-safety: gRPC calls the handlers concurrently; shared state is locked.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "coordinator/api_keys.h"
#include "coordinator/cluster.h"
#include "models/kv_retention.h"
#include "models/model_spec.h"
#include "models/pooling.h"
#include "tessera/v1/tessera.grpc.pb.h"
#include "tokenizer/tokenizer.h"

namespace tessera::coordinator {

// The request field an INVALID_ARGUMENT concerns ("top_p", "prompt"), when one does:
// the HTTP API names it as the error's `param`. Empty when none is attached.
absl::Status FieldError(const std::string& field, const std::string& message);
std::string ErrorField(const absl::Status& status);

// An embedding request's last event (Frontend::StartEmbeddings): OK when it carries
// the embedding, else why it does not (its error; CANCELLED when it was aborted;
// INVALID_ARGUMENT when the input is longer than a replica group's KV cache).
absl::Status EmbeddingOutcome(const RequestEvent& last);

struct FrontendOptions {
  std::string model_name;
  int max_queue = 1024;  // requests waiting in all groups before RESOURCE_EXHAUSTED
  // Requests one tenant (an API key's, or everyone's without keys) may have running
  // or queued at once before its next one is RESOURCE_EXHAUSTED; 0: no limit.
  int max_streams_per_tenant = 0;
  int tensor_parallel = 1;  // the groups' layout, reported by GetModelInfo
  int expert_parallel = 1;
  bool batch_invariant = false;  // reported by GetServerInfo
  // How Embed reads an embedding off the final hidden states (--embedding-pooling).
  models::Pooling embedding_pooling = models::Pooling::kLast;
  // The KV policy of requests that name none (--kv-policy, --sink-tokens, --window).
  models::KvRetention kv_retention;
  ApiKeys api_keys;              // none: the client APIs are open
};

// `prefix` and 128 random bits in hex: request ids nobody can guess (Abort and the
// request log name requests by them).
std::string RandomRequestId(std::string_view prefix);

class Frontend final : public v1::TesseraService::Service {
 public:
  // `observer` (may be null) is told of every request's milestones (ServingMetrics).
  Frontend(FrontendOptions options, models::ModelSpec spec, std::unique_ptr<tokenizer::Tokenizer> tokenizer,
           Cluster* cluster, RequestObserver* observer = nullptr);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                     v1::EmbedResponse* response) override;
  grpc::Status Abort(grpc::ServerContext* context, const v1::AbortRequest* request, v1::AbortResponse*) override;
  grpc::Status Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext*, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;
  grpc::Status GetServerInfo(grpc::ServerContext*, const v1::GetServerInfoRequest*, v1::ServerInfo* response) override;

  // The path every front end (gRPC above, HTTP in openai_api.h) shares.
  //
  // Validates, tokenizes and routes a request; the caller takes its events and calls
  // Forget once it has seen the last one (or after aborting it). Errors carry the
  // request field they concern (ErrorField).
  // `tenant` is the caller's (Authenticate): it salts the request's prefix cache.
  absl::StatusOr<std::shared_ptr<Request>> Start(const v1::GenerateRequest& request, const std::string& tenant);
  void Forget(const Request& request);
  // What a request's sequence keeps of its KV cache: its kv_policy, the server's
  // defaults filling what it leaves unset (INVALID_ARGUMENT naming kv_policy).
  absl::StatusOr<models::KvRetention> KvRetentionOf(const v1::GenerateRequest& request) const;
  // The same for an embedding call: one request per input, in order, each ending with
  // an event that carries its embedding. On an error none is left running; errors
  // name the input ("input[2]: ...").
  absl::StatusOr<std::vector<std::shared_ptr<Request>>> StartEmbeddings(const v1::EmbedRequest& request,
                                                                        const std::string& tenant);
  // The tenant of an "Authorization: Bearer KEY" value; UNAUTHENTICATED when keys are
  // on and it names none.
  absl::StatusOr<std::string> Authenticate(std::string_view authorization) const {
    return options_.api_keys.Authenticate(authorization);
  }
  // The one place sampling defaults live: every unset field gets its value here, so
  // the request, the scheduler and the workers read explicit parameters.
  static v1::SamplingParams ResolveSamplingDefaults(v1::SamplingParams p);
  // NOT_FOUND for a model name other than this server's ("" means this one).
  absl::Status CheckModel(const std::string& name) const;
  absl::StatusOr<std::vector<int32_t>> TokenizeText(const std::string& text, bool add_special_tokens) const;
  absl::StatusOr<std::string> DetokenizeIds(const std::vector<int32_t>& ids, bool skip_special_tokens) const;
  // Whether some replica group can take requests now.
  bool Ready() const;
  // What GetServerInfo answers: groups, queues, KV pools, the block index.
  v1::ServerInfo Info() const;
  const std::string& model_name() const { return options_.model_name; }
  const models::ModelSpec& spec() const { return spec_; }

 private:
  absl::Status NeedTokenizer() const;
  absl::Status ValidateSampling(const v1::SamplingParams& p) const;
  absl::StatusOr<std::shared_ptr<Request>> Admit(const v1::GenerateRequest& request, const std::string& tenant,
                                                 models::Pooling pooling = models::Pooling::kNone);
  // The gRPC caller's tenant, from its `authorization` metadata.
  absl::StatusOr<std::string> Caller(const grpc::ServerContext& context) const;

  const FrontendOptions options_;
  const models::ModelSpec spec_;
  const std::unique_ptr<tokenizer::Tokenizer> tokenizer_;  // null: ids only
  Cluster* const cluster_;
  RequestObserver* const observer_;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<Request>> active_;  // by ActiveKey(tenant, id); guarded by mu_
  // Each tenant's requests alive now: a request holds its count until it is destroyed
  // (its stream ended and its group let it go), so no path can leak a slot.
  std::map<std::string, std::shared_ptr<std::atomic<int>>> streams_;  // guarded by mu_
};

}  // namespace tessera::coordinator
