#include "kvstore/block_server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "kvstore/block_socket.h"

namespace tessera::kvstore {

absl::StatusOr<std::unique_ptr<BlockServer>> BlockServer::Start(const std::string& host, int port,
                                                                const BlockSource* source,
                                                                std::shared_ptr<const tls::SocketTls> tls) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve ", host, " for the block server"));
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  const int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool ok = fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  freeaddrinfo(found);
  if (!ok) {
    const std::string why = strerror(errno);
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat("block server cannot listen on ", host, ":", port, ": ", why));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<BlockServer>(new BlockServer(fd, bound_port, source, std::move(tls)));
}

BlockServer::BlockServer(int listen_fd, int port, const BlockSource* source, std::shared_ptr<const tls::SocketTls> tls)
    : listen_fd_(listen_fd), port_(port), source_(source), tls_(std::move(tls)), acceptor_([this] { AcceptLoop(); }) {}

BlockServer::~BlockServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::unique_lock<std::mutex> lock(mu_);
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
  idle_.wait(lock, [this] { return connections_.empty(); });
}

void BlockServer::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      ::close(fd);
      break;
    }
    connections_.push_back(fd);
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void BlockServer::Serve(int fd) {
  // An idle pooled connection closes after the timeout; the TLS handshake runs here, off
  // the acceptor's thread.
  absl::StatusOr<std::unique_ptr<wire::Conn>> conn = wire::Conn::Accept(fd, std::chrono::seconds(60), tls_.get());
  if (conn.ok()) {
    ServeRequests(**conn);
  } else {
    ++peers_refused_;
  }
  std::lock_guard<std::mutex> lock(mu_);
  connections_.erase(std::find(connections_.begin(), connections_.end(), fd));
  if (conn.ok()) conn->reset();  // closes the socket
  idle_.notify_all();
}

void BlockServer::ServeRequests(wire::Conn& conn) {
  wire::RequestHeader header{};
  std::vector<BlockHash> hashes;
  std::vector<std::byte> slice;
  // A connection may carry several requests, one after another.
  while (!stop_ && conn.ReadAll(&header, sizeof(header))) {
    const KvLayout layout = source_->layout();
    const HeadRange held = source_->heads();
    // Head numbers are checked as sent (unsigned) before they become ints.
    const bool heads_sane = header.head_begin < header.head_end &&
                            header.head_end <= static_cast<uint32_t>(std::numeric_limits<int>::max());
    const HeadRange range{static_cast<int>(header.head_begin), static_cast<int>(header.head_end)};
    uint32_t status = wire::kOk;
    if (header.magic != wire::kMagic || header.count > wire::kMaxBlocksPerRequest || !heads_sane) {
      status = wire::kBadRequest;
    } else if (header.num_layers != static_cast<uint32_t>(layout.num_layers) ||
               header.block_size != static_cast<uint32_t>(layout.block_size) ||
               header.head_dim != static_cast<uint32_t>(layout.head_dim) ||
               header.kv_dtype != static_cast<uint32_t>(layout.dtype)) {
      status = wire::kLayoutMismatch;
    } else if (!held.Contains(range)) {
      status = wire::kHeadsNotHeld;
    }
    if (status != wire::kOk) {
      conn.WriteAll(&status, sizeof(status));
      return;
    }
    hashes.resize(header.count);
    if (!conn.ReadAll(hashes.data(), hashes.size() * sizeof(BlockHash))) return;
    if (!conn.WriteAll(&status, sizeof(status), /*more=*/true)) return;
    slice.resize(static_cast<size_t>(SliceBytes(layout, range.size())));
    for (const BlockHash& hash : hashes) {
      const uint8_t found = source_->ReadSlice(hash, layout, range, slice.data()) ? 1 : 0;
      blocks_served_ += found;  // counted before the peer can see it
      if (found) bytes_served_ += static_cast<int64_t>(slice.size());
      if (!conn.WriteAll(&found, 1, /*more=*/found != 0) ||
          (found && !conn.WriteAll(slice.data(), slice.size()))) {
        return;
      }
    }
  }
}

}  // namespace tessera::kvstore
