// The KV store's bulk data plane: a worker serves the cached blocks of its host tier
// to peers over plain TCP (no protobuf framing: a small header, then raw block
// bytes), and a peer fetches a list of blocks over several connections at once. gRPC
// carries only the control messages around it. Wire format: docs/kv-blocks.md.
//
// A peer asks for a head slice of each block: KV heads [begin, end) in global head
// numbering, so a group of another tensor-parallel degree takes exactly the heads it
// holds, from as many peers as hold them, and the bytes land unchanged (bit-exact).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/block_hash.h"
#include "kvstore/kv_layout.h"

namespace tessera::kvstore {

// KV heads [begin, end), numbered as in the whole model.
struct HeadRange {
  int begin = 0, end = 0;
  int size() const { return end - begin; }
  bool Contains(HeadRange r) const { return begin <= r.begin && r.end <= end; }
};

// Elements of a slice of `heads` of one block: [layer][K|V][head][token][head_dim].
int64_t SliceElems(const KvLayout& layout, int heads);
// Copies heads [first, first + count) (local numbering) of a block out into a slice,
// and back in.
void CopySliceOut(const KvLayout& layout, const float* block, int first, int count, float* slice);
void CopySliceIn(const KvLayout& layout, const float* slice, int first, int count, float* block);

// What a BlockServer serves: blocks by content hash.
class BlockSource {
 public:
  virtual ~BlockSource() = default;
  // The layout of the blocks held (num_kv_heads: the heads held) and their heads.
  virtual KvLayout layout() const = 0;
  virtual HeadRange heads() const = 0;
  // Writes heads `range` of the block holding `hash` to `slice`, sized for `layout`;
  // false if no block holds it, or the blocks held are no longer of `layout`.
  virtual bool ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange range, float* slice) const = 0;
};

class BlockServer {
 public:
  // Listens on host:port (port 0: any free port) and serves `source` (which must
  // outlive the server) until destroyed.
  static absl::StatusOr<std::unique_ptr<BlockServer>> Start(const std::string& host, int port,
                                                            const BlockSource* source);
  ~BlockServer();

  int port() const { return port_; }
  int64_t blocks_served() const { return blocks_served_; }
  int64_t bytes_served() const { return bytes_served_; }  // block bytes sent to peers

 private:
  BlockServer(int listen_fd, int port, const BlockSource* source);
  void AcceptLoop();
  void Serve(int fd);

  const int listen_fd_;
  const int port_;
  const BlockSource* const source_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> blocks_served_{0};
  std::atomic<int64_t> bytes_served_{0};
  std::mutex mu_;
  std::condition_variable idle_;
  // Open client sockets, each served by a detached thread; shut down on stop, and the
  // destructor waits until every thread has left. Guarded by mu_.
  std::vector<int> connections_;
  std::thread acceptor_;
};

// A peer and the heads it holds.
struct BlockPeer {
  std::string address;  // host:port of its BlockServer
  HeadRange heads;
};

struct FetchOptions {
  int streams = 4;  // parallel connections per peer
  std::chrono::milliseconds timeout{10000};
};

// Fetches the blocks `hashes` into `blocks` (blocks[i] receives hashes[i]; each a block
// of `layout`, holding the heads `want`), taking every head from some peer that holds
// it. All or nothing: NOT_FOUND when a peer no longer holds a block, UNAVAILABLE when
// one cannot be reached, FAILED_PRECONDITION when the peers do not cover `want`,
// DATA_LOSS on a protocol mismatch.
absl::Status FetchBlocks(std::span<const BlockPeer> peers, std::span<const BlockHash> hashes,
                         const KvLayout& layout, HeadRange want, std::span<float* const> blocks,
                         const FetchOptions& options = {});

}  // namespace tessera::kvstore
