// BlockIndex: the coordinator's cluster-wide view of which worker's host tier holds
// which KV block (by content hash), and the heads and data-plane address to fetch it
// from. It is built only from the workers' numbered stored/removed events (worker
// HostTier); a gap in the numbers, a worker it has never heard of, or a coordinator
// restart makes it ask that worker for a snapshot, so it converges on what the
// workers actually hold. A lost worker's entries leave with it.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "kvstore/block_hash.h"
#include "kvstore/block_fetcher.h"
#include "tessera/v1/internal/worker.pb.h"

namespace tessera::kvstore {

class BlockIndex {
 public:
  struct Ack {
    uint64_t acked_seq = 0;
    bool resync = false;  // send a snapshot
  };
  // Applies one heartbeat's events from `worker_id`.
  Ack Apply(const std::string& worker_id, const v1::internal::KvEvents& events);
  void RemoveWorker(const std::string& worker_id);

  // Where the first `blocks` of `hashes` (a prefix's chain) can be fetched from:
  // peers that, together, hold every KV head of each of them.
  struct Found {
    int64_t blocks = 0;
    std::vector<BlockPeer> peers;
  };
  Found LongestPrefix(std::span<const BlockHash> hashes) const;

  int64_t num_blocks() const;   // distinct hashes held somewhere
  int64_t num_entries() const;  // (worker, hash) pairs
  int num_workers() const;
  int64_t resyncs() const;

 private:
  struct Worker {
    BlockPeer peer;
    int num_kv_heads = 0;
    std::optional<uint64_t> seq;  // last event applied; none until the first snapshot
    std::unordered_set<BlockHash, BlockHashHasher> blocks;
  };
  void Store(const std::string& id, Worker& w, const BlockHash& h);   // under mu_
  void Remove(const std::string& id, Worker& w, const BlockHash& h);  // under mu_
  void Clear(const std::string& id, Worker& w);                                // under mu_

  mutable std::mutex mu_;
  std::map<std::string, Worker> workers_;
  std::unordered_map<BlockHash, std::vector<std::string>, BlockHashHasher> holders_;
  int64_t resyncs_ = 0;
};

}  // namespace tessera::kvstore
