// How a client of a running server reaches its gRPC API: the address, TLS (verifying
// the server's certificate against a CA the user gives) and the API key. Shared by
// `tessera client`, `tessera info` and tessera-bench.
//
// The key comes from the environment (TESSERA_API_KEY), not a flag: a command line is
// visible to every user of the machine (ps).
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "cli/args.h"
#include "tessera/v1/tessera.grpc.pb.h"

namespace tessera::cli {

class ServerConnection {
 public:
  // The flags it reads: --address HOST:PORT (127.0.0.1:50051), --tls-ca FILE.
  static const std::set<std::string>& Flags();
  // INVALID_ARGUMENT when --tls-ca cannot be read or holds no certificate.
  static absl::StatusOr<ServerConnection> FromArgs(const Args& args);

  const std::string& address() const { return address_; }
  v1::TesseraService::Stub& stub() const { return *stub_; }
  // Puts the key (when there is one) and a deadline (when `timeout` is not zero) on `ctx`.
  void Prepare(grpc::ClientContext* ctx, std::chrono::milliseconds timeout = {}) const;

 private:
  std::string address_;
  std::string api_key_;
  std::shared_ptr<v1::TesseraService::Stub> stub_;
};

}  // namespace tessera::cli
