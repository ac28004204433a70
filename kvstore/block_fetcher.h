// The KV store's bulk data plane, fetching side: a peer fetches a list of blocks from
// the BlockServers (block_server.h) that hold them, every KV head from some peer that
// holds it, over several connections at once. Connections stay open between fetches
// in the fetcher's own pool (a warm connection skips the handshake and TCP slow start,
// which dominate small fetches over long links, and the TLS handshake when the plane
// has TLS).
//
// Thread-safety: Fetch may be called from several threads at once.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/tls.h"
#include "kvstore/block_hash.h"
#include "kvstore/head_slice.h"
#include "kvstore/kv_layout.h"

namespace tessera::kvstore {
namespace wire {
class Conn;
}

// A peer and the heads it holds.
struct BlockPeer {
  std::string address;  // host:port of its BlockServer
  HeadRange heads;
};

// One peer's share of a fetch: heads `range` of every block.
struct FetchRun {
  const BlockPeer* peer;
  HeadRange range;
};

// The fetch planner: covers the heads `want` with runs from `peers`, each as long as
// possible (fewest connections). FAILED_PRECONDITION naming a head no peer holds.
absl::StatusOr<std::vector<FetchRun>> PlanFetchRuns(std::span<const BlockPeer> peers, HeadRange want);

struct FetchOptions {
  int streams = 4;  // parallel connections per peer
  std::chrono::milliseconds timeout{10000};
};

class BlockFetcher {
 public:
  // With `tls`, connects with mutual TLS only to peers whose certificate its CA signed.
  explicit BlockFetcher(std::shared_ptr<const tls::SocketTls> tls = nullptr);
  ~BlockFetcher();  // closes the idle connections
  BlockFetcher(const BlockFetcher&) = delete;
  BlockFetcher& operator=(const BlockFetcher&) = delete;

  // Fetches the blocks `hashes` into `blocks` (blocks[i] receives hashes[i]; each a block
  // of `layout`, holding the heads `want`). All or nothing: NOT_FOUND when a peer no
  // longer holds a block, UNAVAILABLE when one cannot be reached, FAILED_PRECONDITION
  // when the peers do not cover `want`, DATA_LOSS on a protocol mismatch.
  absl::Status Fetch(std::span<const BlockPeer> peers, std::span<const BlockHash> hashes, const KvLayout& layout,
                     HeadRange want, std::span<std::byte* const> blocks, const FetchOptions& options = {});

 private:
  // One connection's share: `hashes` from one run, written at local head `local_first`.
  absl::Status FetchOnOneConnection(const FetchRun& run, std::span<const BlockHash> hashes, const KvLayout& layout,
                                    int local_first, std::span<std::byte* const> blocks,
                                    std::chrono::milliseconds timeout);
  std::unique_ptr<wire::Conn> TakeIdle(const std::string& address);  // an idle connection, or null
  void PutIdle(const std::string& address, std::unique_ptr<wire::Conn> conn);

  static constexpr size_t kMaxIdlePerPeer = 16;
  const std::shared_ptr<const tls::SocketTls> tls_;  // null: plain TCP
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<std::unique_ptr<wire::Conn>>> idle_;  // guarded by mu_
};

}  // namespace tessera::kvstore
