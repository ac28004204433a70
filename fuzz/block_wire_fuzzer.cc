// The KV data plane's serving side (kvstore::BlockServer::ServeRequests) reading
// arbitrary bytes from a peer: request headers, hash lists, several requests on one
// connection, truncated ones. The peer's socket is one end of a socketpair: the input
// is written into it and the replies drained from it. Never a crash, a hang or an
// out-of-bounds read; every bad header gets a status and the connection ends.
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>

#include "kvstore/block_server.h"
#include "kvstore/block_socket.h"
#include "kvstore/head_slice.h"

namespace {

using namespace tessera::kvstore;

// Holds every block whose hash starts with an even byte; its layout is small so that
// replies stay small.
class EvenBlocks final : public BlockSource {
 public:
  KvLayout layout() const override { return {.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = 2}; }
  HeadRange heads() const override { return {0, 2}; }
  bool ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange range, std::byte* slice) const override {
    if (hash[0] % 2) return false;
    std::fill_n(slice, SliceBytes(layout, range.size()), static_cast<std::byte>(hash[1]));
    return true;
  }
};

BlockServer& Server() {
  static EvenBlocks source;
  static std::unique_ptr<BlockServer> server = [] {
    auto started = BlockServer::Start("127.0.0.1", 0, &source);
    if (!started.ok()) std::abort();
    return std::move(*started);
  }();
  return *server;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BlockServer& server = Server();
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) std::abort();
  const int peer = fds[0];
  std::thread writer([&] {
    for (size_t done = 0; done < size;) {
      const ssize_t n = send(peer, data + done, size - done, MSG_NOSIGNAL);  // the server may hang up first
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    shutdown(peer, SHUT_WR);
  });
  std::thread drainer([&] {
    char buffer[1 << 14];
    while (read(peer, buffer, sizeof(buffer)) > 0) {
    }
  });
  {
    auto conn = wire::Conn::Accept(fds[1], std::chrono::seconds(5), nullptr);
    if (!conn.ok()) std::abort();
    server.ServeRequests(**conn);
  }  // closes the server's end: the drainer sees the end of the replies
  writer.join();
  drainer.join();
  close(peer);
  return 0;
}
