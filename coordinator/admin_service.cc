#include "coordinator/admin_service.h"

#include "common/grpc_status.h"

namespace tessera::coordinator {

AdminService::AdminService(Cluster* cluster, ApiKeys admin_keys, const ApiKeys* client_keys)
    : cluster_(cluster), admin_keys_(std::move(admin_keys)), client_keys_(client_keys) {}

absl::Status AdminService::Authorize(std::string_view authorization) const {
  if (!admin_keys_.enabled()) {
    if (!client_keys_->enabled()) return absl::OkStatus();
    return absl::PermissionDeniedError(
        "the admin API is closed: no admin key is configured (start the coordinator with --admin-key-file)");
  }
  if (admin_keys_.Authenticate(authorization).ok()) return absl::OkStatus();
  if (client_keys_->enabled() && client_keys_->Authenticate(authorization).ok()) {
    return absl::PermissionDeniedError("a client API key cannot call the admin API");
  }
  return absl::UnauthenticatedError("the admin API needs an admin key: authorization: Bearer KEY");
}

grpc::Status AdminService::Drain(grpc::ServerContext* context, const v1::DrainRequest* r, v1::DrainResponse*) {
  const auto& metadata = context->client_metadata();
  const auto it = metadata.find("authorization");
  const std::string_view authorization =
      it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  if (absl::Status allowed = Authorize(authorization); !allowed.ok()) return ToGrpc(allowed);
  return ToGrpc(cluster_->Drain(r->worker_id()));
}

}  // namespace tessera::coordinator
