#include "kvstore/block_socket.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tessera::kvstore::wire {
namespace {

void SetSocketTimeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // also bounds connect()
}

absl::StatusOr<int> ConnectSocket(const std::string& host, const std::string& port, const std::string& address,
                                  std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve block peer ", address));
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    SetSocketTimeouts(fd, timeout);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to block peer ", address, ": ", strerror(errno)));
  return fd;
}

// The peer must carry `name` in its certificate: an IP address SAN for an address, a
// DNS name otherwise.
void ExpectPeerName(SSL* ssl, const std::string& name) {
  X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
  in6_addr ip6;
  in_addr ip4;
  if (inet_pton(AF_INET, name.c_str(), &ip4) == 1 || inet_pton(AF_INET6, name.c_str(), &ip6) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
  } else {
    X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
    SSL_set_tlsext_host_name(ssl, name.c_str());
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Conn>> Conn::Connect(const std::string& address, std::chrono::milliseconds timeout,
                                                    const tls::SocketTls* tls) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("bad block peer address ", address));
  std::string host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  absl::StatusOr<int> fd = ConnectSocket(host, address.substr(colon + 1), address, timeout);
  if (!fd.ok()) return fd.status();
  if (tls == nullptr) return std::unique_ptr<Conn>(new Conn(*fd, nullptr));
  SSL* ssl = SSL_new(tls->client());
  std::unique_ptr<Conn> conn(new Conn(*fd, ssl));
  ExpectPeerName(ssl, tls->server_name().empty() ? host : tls->server_name());
  if (ssl == nullptr || SSL_set_fd(ssl, *fd) != 1 || SSL_connect(ssl) != 1) {
    const long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    return absl::UnavailableError(absl::StrCat(
        "TLS with block peer ", address, " failed: ",
        verify != X509_V_OK ? X509_verify_cert_error_string(verify) : tls::OpenSslErrors()));
  }
  return conn;
}

absl::StatusOr<std::unique_ptr<Conn>> Conn::Accept(int fd, std::chrono::milliseconds timeout,
                                                   const tls::SocketTls* tls) {
  SetSocketTimeouts(fd, timeout);
  if (tls == nullptr) return std::unique_ptr<Conn>(new Conn(fd, nullptr));
  SSL* ssl = SSL_new(tls->server());
  std::unique_ptr<Conn> conn(new Conn(fd, ssl));
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1) {
    return absl::UnauthenticatedError("a block peer failed the TLS handshake: " + tls::OpenSslErrors());
  }
  return conn;
}

Conn::~Conn() {
  if (ssl_ != nullptr) SSL_free(ssl_);
  ::close(fd_);
}

bool Conn::WriteAll(const void* data, size_t n, bool more) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w;
    if (ssl_ != nullptr) {
      size_t written = 0;
      w = SSL_write_ex(ssl_, p, n, &written) == 1 ? static_cast<ssize_t>(written) : -1;
      if (w < 0) return false;
    } else {
      w = ::send(fd_, p, n, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
      if (w < 0 && errno == EINTR) continue;
    }
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool Conn::ReadAll(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r;
    if (ssl_ != nullptr) {
      size_t read = 0;
      r = SSL_read_ex(ssl_, p, n, &read) == 1 ? static_cast<ssize_t>(read) : -1;
      if (r < 0) return false;
    } else {
      r = ::recv(fd_, p, n, 0);
      if (r < 0 && errno == EINTR) continue;
    }
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void Conn::SetTimeouts(std::chrono::milliseconds timeout) { SetSocketTimeouts(fd_, timeout); }

void Conn::Shutdown() { ::shutdown(fd_, SHUT_RDWR); }

}  // namespace tessera::kvstore::wire
