#include "common/tls.h"

#include <grpcpp/grpcpp.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/signals.h"

namespace tessera::tls {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using UniqueX509 = std::unique_ptr<X509, X509Free>;
using UniqueKey = std::unique_ptr<EVP_PKEY, KeyFree>;

std::unique_ptr<BIO, BioFree> MemoryBio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// Every certificate in `pem`, in order.
std::vector<UniqueX509> ParseCertificates(const std::string& pem) {
  std::vector<UniqueX509> certs;
  auto bio = MemoryBio(pem);
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) certs.emplace_back(x);
  ERR_clear_error();  // the read that ends the loop leaves "no start line"
  return certs;
}

UniqueKey ParseKey(const std::string& pem) {
  auto bio = MemoryBio(pem);
  return UniqueKey(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Presents `m`'s certificate chain and key, and trusts `m.ca`, in `ctx`.
absl::Status Configure(SSL_CTX* ctx, const Material& m, bool server) {
  if (ctx == nullptr) return absl::InternalError("cannot make an OpenSSL context: " + OpenSslErrors());
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  std::vector<UniqueX509> chain = ParseCertificates(m.cert);
  UniqueKey key = ParseKey(m.key);
  if (chain.empty() || !key || SSL_CTX_use_certificate(ctx, chain[0].get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) {
    return absl::InvalidArgumentError("cannot use the internal certificate: " + OpenSslErrors());
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    if (SSL_CTX_add_extra_chain_cert(ctx, chain[i].get()) != 1) {
      return absl::InvalidArgumentError("cannot use the internal certificate chain: " + OpenSslErrors());
    }
    chain[i].release();  // owned by ctx now
  }
  X509_STORE* store = SSL_CTX_get_cert_store(ctx);
  for (const UniqueX509& ca : ParseCertificates(m.ca)) X509_STORE_add_cert(store, ca.get());
  SSL_CTX_set_verify(ctx, server ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER, nullptr);
  return absl::OkStatus();
}

}  // namespace

std::string OpenSslErrors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char buffer[256];
    ERR_error_string_n(e, buffer, sizeof(buffer));
    absl::StrAppend(&text, text.empty() ? "" : "; ", buffer);
  }
  return text.empty() ? "unknown OpenSSL error" : text;
}

void AddInternalFlags(FlagTable& t, Files* f) {
  t.String("internal-tls-ca", &f->ca, "FILE",
           "mutual TLS on the internal plane (worker API, workers, KV data plane): the CA every internal "
           "certificate must be signed by (docs/security.md); with --internal-tls-cert and -key");
  t.String("internal-tls-cert", &f->cert, "FILE", "this process's internal certificate chain (PEM)");
  t.String("internal-tls-key", &f->key, "FILE", "the private key of --internal-tls-cert (PEM)");
  t.String("internal-tls-name", &f->server_name, "NAME",
           "the name every internal certificate carries, checked instead of the dialed host (\"\": the host)");
}

absl::StatusOr<std::shared_ptr<const Material>> Load(const Files& files, Role role, const std::string& plane) {
  const std::string prefix = plane == "internal" ? "internal-tls-" : "tls-";
  if (files.cert.empty() && files.key.empty() && files.ca.empty()) return nullptr;
  const bool need_cert = role != Role::kClient;
  const bool need_ca = role != Role::kServer;
  if (need_cert && (files.cert.empty() || files.key.empty())) {
    return absl::InvalidArgumentError(absl::StrCat("TLS on the ", plane, " plane needs --", prefix, "cert and --",
                                                   prefix, "key"));
  }
  if (need_ca && files.ca.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS on the ", plane, " plane needs --", prefix, "ca"));
  }
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--", prefix, "cert and --", prefix, "key go together"));
  }
  auto m = std::make_shared<Material>();
  m->server_name = files.server_name;
  if (!files.cert.empty()) {
    absl::StatusOr<std::string> cert = ReadFile(files.cert, prefix + "cert");
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = ReadFile(files.key, prefix + "key");
    if (!key.ok()) return key.status();
    std::vector<UniqueX509> chain = ParseCertificates(*cert);
    if (chain.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", prefix, "cert: no PEM certificate in ", files.cert));
    }
    UniqueKey parsed = ParseKey(*key);
    if (!parsed) {
      return absl::InvalidArgumentError(absl::StrCat("--", prefix, "key: no PEM private key in ", files.key));
    }
    if (X509_check_private_key(chain[0].get(), parsed.get()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("--", prefix, "key ", files.key, " is not the key of the certificate ", files.cert));
    }
    m->cert = std::move(*cert);
    m->key = std::move(*key);
  }
  if (!files.ca.empty()) {
    absl::StatusOr<std::string> ca = ReadFile(files.ca, prefix + "ca");
    if (!ca.ok()) return ca.status();
    if (ParseCertificates(*ca).empty()) {
      return absl::InvalidArgumentError(absl::StrCat("--", prefix, "ca: no PEM certificate in ", files.ca));
    }
    m->ca = std::move(*ca);
  }
  return std::shared_ptr<const Material>(std::move(m));
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentials(const Material* m, bool mutual) {
  if (m == nullptr) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions options(mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                                   : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  options.pem_root_certs = m->ca;
  options.pem_key_cert_pairs.push_back({m->key, m->cert});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::Channel> Dial(const std::string& address, const Material* m) {
  return Dial(address, m, grpc::ChannelArguments());
}

std::shared_ptr<grpc::Channel> Dial(const std::string& address, const Material* m, grpc::ChannelArguments args) {
  if (m == nullptr) return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = m->ca;
  options.pem_private_key = m->key;
  options.pem_cert_chain = m->cert;
  if (!m->server_name.empty()) args.SetSslTargetNameOverride(m->server_name);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

absl::StatusOr<std::shared_ptr<const SocketTls>> SocketTls::Create(const Material& m) {
  // A peer that closed mid-write must fail OpenSSL's write, not kill the process.
  IgnoreBrokenPipes();
  std::shared_ptr<SocketTls> tls(new SocketTls());
  tls->server_ = SSL_CTX_new(TLS_server_method());
  if (absl::Status s = Configure(tls->server_, m, /*server=*/true); !s.ok()) return s;
  tls->client_ = SSL_CTX_new(TLS_client_method());
  if (absl::Status s = Configure(tls->client_, m, /*server=*/false); !s.ok()) return s;
  tls->server_name_ = m.server_name;
  return std::shared_ptr<const SocketTls>(std::move(tls));
}

SocketTls::~SocketTls() {
  SSL_CTX_free(server_);
  SSL_CTX_free(client_);
}

}  // namespace tessera::tls
