// TLS material (PEM files) and what each transport makes of it: gRPC credentials and
// OpenSSL contexts for the KV data plane (docs/security.md).
//
// Two planes use it. The client plane (the client API and the HTTP API) has a server
// certificate only; clients verify it against a CA of their own. The internal plane
// (the coordinator's worker API, the workers' API and the KV data plane) is mutual:
// every process presents a certificate signed by the internal CA and accepts a peer
// only if its certificate is signed by the same CA. A dialing side also checks the
// name: the host it dials, or one fixed name all internal certificates carry
// (--internal-tls-name), for clusters whose peers have no stable names.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct ssl_ctx_st;  // OpenSSL's SSL_CTX

namespace grpc {
class ChannelArguments;
class ChannelCredentials;
class ServerCredentials;
class Channel;
}  // namespace grpc

namespace tessera {
class FlagTable;

namespace tls {

// Paths of PEM files, as the flags give them ("" : not given).
struct Files {
  std::string cert;         // certificate chain
  std::string key;          // its private key
  std::string ca;           // CA certificates that peers' certificates must chain to
  std::string server_name;  // the name dialed peers' certificates must carry ("" : the dialed host)
};

// The internal plane's flags (--internal-tls-ca, -cert, -key, -name), one set for every
// server: the coordinator and the workers.
void AddInternalFlags(FlagTable& table, Files* files);

// Loaded and checked PEM material (the key matches the certificate; each parses).
struct Material {
  std::string cert, key, ca;
  std::string server_name;
  bool has_identity() const { return !cert.empty(); }
};

// What a process needs of the files once any is given.
enum class Role {
  kServer,  // a server of the client plane: cert and key
  kClient,  // a client verifying its server: ca
  kMutual,  // the internal plane: cert, key and ca
};

// nullptr when no file is given (TLS off). INVALID_ARGUMENT naming the file and what is
// wrong with it: unreadable, not PEM, a key that does not match the certificate, a cert
// without a key, a file `role` needs missing. `plane` names the flags in messages:
// "client" (--tls-*) or "internal" (--internal-tls-*).
absl::StatusOr<std::shared_ptr<const Material>> Load(const Files& files, Role role, const std::string& plane);

// gRPC: a server presents `m`'s certificate, and with `mutual` requires and verifies
// the client's against `m.ca`. Insecure credentials when `m` is null.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Material* m, bool mutual);
// A channel to `address` verifying the server against `m.ca` (and presenting `m`'s
// certificate when it has one); insecure when `m` is null. `args` may carry more options.
std::shared_ptr<grpc::Channel> Dial(const std::string& address, const Material* m);
std::shared_ptr<grpc::Channel> Dial(const std::string& address, const Material* m, grpc::ChannelArguments args);

// OpenSSL contexts of a mutual plane for a plain-socket protocol (the KV data plane):
// both ends present `m`'s certificate and verify the other's against `m.ca`.
class SocketTls {
 public:
  static absl::StatusOr<std::shared_ptr<const SocketTls>> Create(const Material& m);
  ~SocketTls();
  SocketTls(const SocketTls&) = delete;
  SocketTls& operator=(const SocketTls&) = delete;

  ssl_ctx_st* server() const { return server_; }
  ssl_ctx_st* client() const { return client_; }
  // The name a dialed peer's certificate must carry; "" : the dialed host.
  const std::string& server_name() const { return server_name_; }

 private:
  SocketTls() = default;
  ssl_ctx_st* server_ = nullptr;
  ssl_ctx_st* client_ = nullptr;
  std::string server_name_;
};

// The last OpenSSL errors of this thread as text (and clears them).
std::string OpenSslErrors();

}  // namespace tls
}  // namespace tessera
