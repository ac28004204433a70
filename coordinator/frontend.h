// Frontend: the public tessera.v1.Tessera service. Validates and tokenizes requests,
// routes them through the cluster, and streams their events back; maps every error
// to its gRPC status code (see proto/tessera/v1/tessera.proto).
//
// Thread-safety: gRPC calls the handlers concurrently; shared state is locked.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "coordinator/cluster.h"
#include "models/model_spec.h"
#include "tessera/v1/tessera.grpc.pb.h"
#include "tokenizer/tokenizer.h"

namespace tessera::coordinator {

struct FrontendOptions {
  std::string model_name;
  int max_queue = 1024;  // requests waiting in all groups before RESOURCE_EXHAUSTED
  int tensor_parallel = 1;  // the groups' layout, reported by GetModelInfo
  int expert_parallel = 1;
  bool batch_invariant = false;  // reported by GetServerInfo
};

class Frontend final : public v1::Tessera::Service {
 public:
  Frontend(FrontendOptions options, models::ModelSpec spec, std::unique_ptr<tokenizer::Tokenizer> tokenizer,
           Cluster* cluster);

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override;
  grpc::Status Abort(grpc::ServerContext*, const v1::AbortRequest* request, v1::AbortResponse*) override;
  grpc::Status Tokenize(grpc::ServerContext*, const v1::TokenizeRequest* request,
                        v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext*, const v1::DetokenizeRequest* request,
                          v1::DetokenizeResponse* response) override;
  grpc::Status GetModelInfo(grpc::ServerContext*, const v1::GetModelInfoRequest* request,
                            v1::ModelInfo* response) override;
  grpc::Status GetServerInfo(grpc::ServerContext*, const v1::GetServerInfoRequest*, v1::ServerInfo* response) override;
  grpc::Status Drain(grpc::ServerContext*, const v1::DrainRequest* request, v1::DrainResponse*) override;

 private:
  grpc::Status CheckModel(const std::string& name) const;
  absl::Status NeedTokenizer() const;
  absl::Status ValidateSampling(const v1::SamplingParams& p) const;
  absl::StatusOr<std::shared_ptr<Request>> Admit(const v1::GenerateRequest& request);

  const FrontendOptions options_;
  const models::ModelSpec spec_;
  const std::unique_ptr<tokenizer::Tokenizer> tokenizer_;  // null: ids only
  Cluster* const cluster_;
  std::mutex mu_;
  std::map<std::string, std::weak_ptr<Request>> active_;  // by request id; guarded by mu_
  uint64_t next_id_ = 1;                                  // guarded by mu_
};

}  // namespace tessera::coordinator
