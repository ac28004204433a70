#include "coordinator/rendezvous_service.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"

namespace tessera::coordinator {

grpc::Status RendezvousService::Set(grpc::ServerContext*, const v1::internal::StoreSetRequest* request,
                                    v1::internal::StoreSetResponse*) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    values_[request->key()] = request->value();
  }
  set_.notify_all();
  return grpc::Status::OK;
}

grpc::Status RendezvousService::Get(grpc::ServerContext*, const v1::internal::StoreGetRequest* request,
                                    v1::internal::StoreGetResponse* response) {
  const auto timeout = std::chrono::milliseconds(std::clamp(request->timeout_ms(), 0, 120000));
  std::unique_lock<std::mutex> lock(mu_);
  if (!set_.wait_for(lock, timeout, [&] { return values_.contains(request->key()); })) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, absl::StrCat("rendezvous key ", request->key(), " never set"));
  }
  response->set_value(values_[request->key()]);
  return grpc::Status::OK;
}

}  // namespace tessera::coordinator
