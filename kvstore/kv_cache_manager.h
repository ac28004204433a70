// KvCacheManager: one replica group's KV cache, as the coordinator keeps its books.
//
// It owns the device pool's block allocator (and the prefix cache in it) and the host
// tier's, and answers the cache questions the scheduler asks: which blocks of a prefix
// are cached (device tier, else host tier: a hit there moves the block back up), what
// other workers' host tiers could supply (through the cluster-wide BlockIndex), room
// for a sequence's tokens. It registers every block that fills under its content hash
// and writes it through to the host tier, moves evicted blocks down to it, and records
// the block copies that follow. It decides nothing about which sequence runs: that
// policy is the scheduler's, which takes the copies each step as a plain plan
// (TakeMoves) and tells the workers.
//
// Thread-safety: every method may be called from any thread (routing reads
// CachedTokens and counters while the group's thread plans); a sequence's blocks are
// changed by one thread at a time.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "kvstore/block_allocator.h"
#include "kvstore/block_hash.h"
#include "kvstore/block_index.h"
#include "kvstore/block_fetcher.h"
#include "kvstore/kv_layout.h"

namespace tessera::kvstore {

struct KvCacheOptions {
  int block_size = kDefaultBlockSize;
  int32_t num_blocks = 0;
  // Prefix caching: full blocks are identified by content hash (docs/kv-blocks.md)
  // chained from a root of the model identity, the KV dtype and the request's cache
  // salt; an empty identity disables it.
  std::string model_identity;
  std::string kv_dtype = "f32";
  // The host tier: cached blocks evicted from the device pool move here (swap out)
  // instead of being dropped, and come back on a hit (swap in). 0: no host tier.
  int32_t num_host_blocks = 0;
  // Where other workers' cached blocks are (null: no remote fetches). Must outlive the
  // manager.
  const BlockIndex* block_index = nullptr;
};

// One sequence's blocks and what the cache knows about them.
struct SequenceBlocks {
  std::string salt;                // the request's cache salt (its tenant)
  BlockTable table;
  std::vector<BlockHash> hashes;    // of the full blocks registered so far, in order
  std::vector<BlockHash> fetching;  // blocks being fetched from peers this step
};

class KvCacheManager {
 public:
  explicit KvCacheManager(const KvCacheOptions& options);

  const KvCacheOptions& options() const { return options_; }
  int block_size() const { return options_.block_size; }
  int32_t num_blocks() const { return options_.num_blocks; }

  // The hashes of the blocks of `tokens` the cache could serve: every full block but
  // the one holding the last token (always computed: it yields the logits).
  std::vector<BlockHash> PrefixHashes(std::span<const int32_t> tokens, const std::string& salt) const;
  // Tokens of the prefix with these hashes that either tier holds (for routing).
  int64_t CachedTokens(std::span<const BlockHash> hashes) const;

  // Takes the cached blocks at the start of `prefix` into the sequence's table;
  // returns how many tokens they hold.
  int64_t TakeCachedPrefix(SequenceBlocks& seq, std::span<const BlockHash> prefix);
  // Blocks to fetch from peers into a sequence's table.
  struct FetchPlan {
    std::vector<BlockHash> hashes;
    std::vector<int32_t> blocks;
    std::vector<BlockPeer> peers;
  };
  // The blocks of `rest` (the prefix after the cached part) that the block index knows
  // of, planned into the sequence's next blocks (which it must already hold); nullopt
  // when there is nothing to fetch.
  std::optional<FetchPlan> PlanFetch(SequenceBlocks& seq, std::span<const BlockHash> rest);
  // A fetch's outcome: fetched blocks are cached and join the sequence's hashes; failed
  // ones stay allocated, to be computed. Returns the tokens the sequence now has cached.
  int64_t FinishFetch(SequenceBlocks& seq, bool ok);

  // Room for `tokens` tokens in the sequence's table; RESOURCE_EXHAUSTED keeps what it
  // allocated (the caller frees or preempts).
  absl::Status EnsureCapacity(SequenceBlocks& seq, int64_t tokens);
  // Registers the blocks filled up to `computed` tokens of `tokens` under their hashes,
  // and writes them through to the host tier.
  void RegisterFullBlocks(SequenceBlocks& seq, std::span<const int32_t> tokens, int64_t computed);
  // Releases the sequence's blocks that hold only tokens before `first_needed` (a
  // sliding window passed them) but those of its first `sink_tokens` tokens (its
  // attention sinks: the same every call): full registered ones stay cached, others
  // are free.
  void ReleaseBefore(SequenceBlocks& seq, int64_t first_needed, int sink_tokens = 0);
  void Free(SequenceBlocks& seq);
  // Host-tier blocks the workers kept through a coordinator restart: cached again.
  void AdoptHostBlocks(std::span<const std::pair<int32_t, BlockHash>> blocks);

  // A copy between the tiers.
  struct BlockCopy {
    int32_t device, host;
    BlockHash hash;
  };
  struct TierMoves {
    std::vector<BlockCopy> swap_out;  // device -> host: evicted and written-through blocks
    std::vector<BlockCopy> swap_in;   // host -> device: host-tier hits
  };
  // The copies planned since the last call, which the workers do before computing.
  TierMoves TakeMoves();

  struct Counters {
    int64_t lookups = 0, hits = 0, evictions = 0;
    int32_t cached_blocks = 0, free_blocks = 0;
    int64_t swapped_out = 0, swapped_in = 0;
    int64_t remote_fetched = 0, remote_fetch_failures = 0;
  };
  Counters counters() const;

 private:
  BlockHash Root(const std::string& salt) const;
  void CopyToHost(int32_t block, const BlockHash& hash);  // under mu_
  void SwapOutEvicted();                                  // under mu_

  const KvCacheOptions options_;
  // Changed by the group thread only, under mu_, which routing takes to read.
  mutable std::mutex mu_;
  BlockAllocator allocator_;
  BlockAllocator host_allocator_;
  // The copies planned since TakeMoves. A host block being swapped in keeps a
  // reference until then, so no copy down can overwrite it first.
  TierMoves moves_;
  int64_t swapped_out_ = 0, swapped_in_ = 0, remote_fetched_ = 0, remote_fetch_failures_ = 0;
};

}  // namespace tessera::kvstore
