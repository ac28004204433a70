// The admin API (proto/tessera/v1/admin.proto): draining workers, for operators and
// autoscalers. Kept apart from the client API: with keys on, only an admin key may
// call it (a client's key gets PERMISSION_DENIED).
#pragma once

#include <string_view>

#include "coordinator/api_keys.h"
#include "coordinator/cluster.h"
#include "tessera/v1/admin.grpc.pb.h"

namespace tessera::coordinator {

class AdminService final : public v1::AdminService::Service {
 public:
  // `admin_keys` (--admin-key-file) may call; `client_keys` (--api-key-file) only tell a
  // client's key apart from a wrong one. With neither, the API is open (a loopback
  // demo), as the client API is.
  AdminService(Cluster* cluster, ApiKeys admin_keys, const ApiKeys* client_keys);

  grpc::Status Drain(grpc::ServerContext* context, const v1::DrainRequest* request, v1::DrainResponse*) override;

  // OK when `authorization` carries an admin key, or when no keys are configured.
  absl::Status Authorize(std::string_view authorization) const;

 private:
  Cluster* const cluster_;
  const ApiKeys admin_keys_;
  const ApiKeys* const client_keys_;
};

}  // namespace tessera::coordinator
