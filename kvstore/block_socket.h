// The KV data plane's wire format (docs/kv-blocks.md) and the socket calls both of its
// ends use: whole reads and writes, timeouts, connecting to a peer. Internal to the
// data plane (block_server.h, block_fetcher.h).
#pragma once

#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace tessera::kvstore::wire {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

constexpr uint32_t kMagic = 0x31564B54;  // "TKV1"
constexpr uint32_t kMaxBlocksPerRequest = 1 << 16;

// The request header; hashes follow.
struct RequestHeader {
  uint32_t magic;
  uint32_t num_layers, block_size, head_dim;
  uint32_t head_begin, head_end;
  uint32_t count;
};
enum ReplyStatus : uint32_t { kOk = 0, kLayoutMismatch = 1, kHeadsNotHeld = 2, kBadRequest = 3 };

// Sends or receives exactly n bytes; false when the connection failed or closed.
bool WriteAll(int fd, const void* data, size_t n, int flags = 0);
bool ReadAll(int fd, void* data, size_t n);
// Bounds every read, write and connect on the socket.
void SetTimeouts(int fd, std::chrono::milliseconds timeout);
// A connected TCP socket to host:port, or UNAVAILABLE naming the peer.
absl::StatusOr<int> Connect(const std::string& address, std::chrono::milliseconds timeout);

}  // namespace tessera::kvstore::wire
