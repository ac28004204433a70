// The rendezvous store the coordinator serves: ranks of a replica group publish and
// look up their peers' collective addresses by key (worker/coordinator_store.h is the
// client). A small service of its own, next to the Coordinator service.
//
// Thread-safety: gRPC calls it from any thread.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera::coordinator {

class RendezvousService final : public v1::internal::Rendezvous::Service {
 public:
  grpc::Status Set(grpc::ServerContext*, const v1::internal::StoreSetRequest* request,
                   v1::internal::StoreSetResponse*) override;
  // Waits up to the request's timeout (at most 120 s) for the key.
  grpc::Status Get(grpc::ServerContext*, const v1::internal::StoreGetRequest* request,
                   v1::internal::StoreGetResponse* response) override;

 private:
  std::mutex mu_;
  std::condition_variable set_;
  std::map<std::string, std::string> values_;  // guarded by mu_
};

}  // namespace tessera::coordinator
