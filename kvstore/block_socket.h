// The KV data plane's wire format (docs/kv-blocks.md) and the connections both of its
// ends use: whole reads and writes, timeouts, connecting to a peer, with mutual TLS on
// them when the internal plane has it (common/tls.h). Internal to the data plane
// (block_server.h, block_fetcher.h).
#pragma once

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/tls.h"

struct ssl_st;  // OpenSSL's SSL

namespace tessera::kvstore::wire {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

constexpr uint32_t kMagic = 0x32564B54;  // "TKV2": version 2 added kv_dtype
constexpr uint32_t kMaxBlocksPerRequest = 1 << 16;

// The request header; hashes follow.
struct RequestHeader {
  uint32_t magic;
  uint32_t num_layers, block_size, head_dim;
  uint32_t kv_dtype;  // KvDtype
  uint32_t head_begin, head_end;
  uint32_t count;
};
enum ReplyStatus : uint32_t { kOk = 0, kLayoutMismatch = 1, kHeadsNotHeld = 2, kBadRequest = 3 };

// One connection: a TCP socket, with a TLS session over it when the plane has TLS.
// Closed on destruction.
class Conn {
 public:
  // Dials host:port: UNAVAILABLE naming the peer when it cannot be reached or its
  // certificate is refused. Every read, write and connect is bounded by `timeout`.
  static absl::StatusOr<std::unique_ptr<Conn>> Connect(const std::string& address, std::chrono::milliseconds timeout,
                                                       const tls::SocketTls* tls);
  // Takes an accepted socket (closing it on failure) and, with TLS, runs the handshake
  // that verifies the peer's certificate.
  static absl::StatusOr<std::unique_ptr<Conn>> Accept(int fd, std::chrono::milliseconds timeout,
                                                      const tls::SocketTls* tls);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // Sends or receives exactly n bytes; false when the connection failed or closed.
  // `more`: more follows at once (the kernel may hold this back to fill a packet).
  bool WriteAll(const void* data, size_t n, bool more = false);
  bool ReadAll(void* data, size_t n);
  void SetTimeouts(std::chrono::milliseconds timeout);
  // Wakes a thread blocked on this connection (a stopping server).
  void Shutdown();

 private:
  Conn(int fd, ssl_st* ssl) : fd_(fd), ssl_(ssl) {}
  const int fd_;
  ssl_st* const ssl_;  // null without TLS
};

}  // namespace tessera::kvstore::wire
