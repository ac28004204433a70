// The KV store's bulk data plane, serving side: a worker serves the cached blocks of its
// host tier to peers over plain TCP (no protobuf framing: a small header, then raw block
// bytes; gRPC carries only the control messages around it), with mutual TLS when the
// internal plane has it. Wire format: docs/kv-blocks.md. A peer asks for a head slice
// of each block (head_slice.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tls.h"
#include "kvstore/block_hash.h"
#include "kvstore/head_slice.h"
#include "kvstore/kv_layout.h"

namespace tessera::kvstore {
namespace wire {
class Conn;
}

// What a BlockServer serves: blocks by content hash.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  // The layout of the blocks held (num_kv_heads: the heads held) and their heads.
  virtual KvLayout layout() const = 0;
  virtual HeadRange heads() const = 0;
  // Writes heads `range` of the block holding `hash` to `slice`, sized for `layout`;
  // false if no block holds it, or the blocks held are no longer of `layout`.
  virtual bool ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange range, std::byte* slice) const = 0;
};

class BlockServer {
 public:
  // Listens on host:port (port 0: any free port) and serves `source` (which must
  // outlive the server) until destroyed; with `tls`, only to peers whose certificate
  // its CA signed.
  static absl::StatusOr<std::unique_ptr<BlockServer>> Start(const std::string& host, int port,
                                                            const BlockSource* source,
                                                            std::shared_ptr<const tls::SocketTls> tls = nullptr);
  ~BlockServer();

  int port() const { return port_; }
  int64_t blocks_served() const { return blocks_served_; }
  int64_t bytes_served() const { return bytes_served_; }  // block bytes sent to peers
  int64_t peers_refused() const { return peers_refused_; }  // failed TLS handshakes

  // Answers one connection's requests until it closes or sends a bad one. The accept
  // loop runs it for each peer; the data plane's fuzzer (fuzz/) feeds it its own socket.
  void ServeRequests(wire::Conn& conn);

 private:
  BlockServer(int listen_fd, int port, const BlockSource* source, std::shared_ptr<const tls::SocketTls> tls);
  void AcceptLoop();
  void Serve(int fd);

  const int listen_fd_;
  const int port_;
  const BlockSource* const source_;
  const std::shared_ptr<const tls::SocketTls> tls_;  // null: plain TCP
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> blocks_served_{0};
  std::atomic<int64_t> bytes_served_{0};
  std::atomic<int64_t> peers_refused_{0};
  std::mutex mu_;
  std::condition_variable idle_;
  // Open client sockets, each served by a detached thread; shut down on stop, and the
  // destructor waits until every thread has left. Guarded by mu_.
  std::vector<int> connections_;
  std::thread acceptor_;
};

}  // namespace tessera::kvstore
