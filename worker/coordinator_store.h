// The rendezvous store of a worker's replica group, served by the coordinator
// (coordinator/rendezvous_service.h): ranks publish and look up their peers' addresses
// through it.
#pragma once

#include <memory>
#include <string>

#include "common/tls.h"
#include "parallel/rendezvous_store.h"
#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera::worker {

class CoordinatorStore : public parallel::RendezvousStore {
 public:
  // `tls`: mutual TLS toward the coordinator's internal port (null: plaintext).
  CoordinatorStore(const std::string& coordinator_address, const tls::Material* tls);
  absl::Status Set(const std::string& key, const std::vector<char>& value) override;
  absl::StatusOr<std::vector<char>> Get(const std::string& key, std::chrono::milliseconds timeout) override;

 private:
  std::unique_ptr<v1::internal::Rendezvous::Stub> stub_;
};

}  // namespace tessera::worker
