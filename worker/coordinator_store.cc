#include "worker/coordinator_store.h"

#include <grpcpp/grpcpp.h>

#include "common/grpc_status.h"

namespace tessera::worker {

CoordinatorStore::CoordinatorStore(const std::string& coordinator_address, const tls::Material* tls)
    : stub_(v1::internal::Rendezvous::NewStub(tls::Dial(coordinator_address, tls))) {}

absl::Status CoordinatorStore::Set(const std::string& key, const std::vector<char>& value) {
  v1::internal::StoreSetRequest req;
  req.set_key(key);
  req.set_value(std::string(value.begin(), value.end()));
  v1::internal::StoreSetResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return FromGrpc(stub_->Set(&ctx, req, &resp));
}

absl::StatusOr<std::vector<char>> CoordinatorStore::Get(const std::string& key, std::chrono::milliseconds timeout) {
  v1::internal::StoreGetRequest req;
  req.set_key(key);
  req.set_timeout_ms(static_cast<int32_t>(timeout.count()));
  v1::internal::StoreGetResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + timeout + std::chrono::seconds(5));
  grpc::Status s = stub_->Get(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s);
  return std::vector<char>(resp.value().begin(), resp.value().end());
}

}  // namespace tessera::worker
