#include "kvstore/kv_cache_manager.h"

namespace tessera::kvstore {

KvCacheManager::KvCacheManager(const KvCacheOptions& options)
    : options_(options), allocator_(options.num_blocks), host_allocator_(options.num_host_blocks) {}

BlockHash KvCacheManager::Root(const std::string& salt) const {
  return RootHash(options_.model_identity, options_.kv_dtype, salt);
}

std::vector<BlockHash> KvCacheManager::PrefixHashes(std::span<const int32_t> tokens, const std::string& salt) const {
  if (options_.model_identity.empty()) return {};
  const int bs = options_.block_size;
  std::vector<BlockHash> hashes;
  BlockHash parent = Root(salt);
  for (int64_t b = 0; b < (static_cast<int64_t>(tokens.size()) - 1) / bs; ++b) {
    parent = ChainHash(parent, tokens.subspan(b * bs, bs));
    hashes.push_back(parent);
  }
  return hashes;
}

int64_t KvCacheManager::CachedTokens(std::span<const BlockHash> hashes) const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t cached = 0;
  for (const BlockHash& h : hashes) {
    if (!allocator_.Contains(h) && !host_allocator_.Contains(h)) break;
    cached += options_.block_size;
  }
  return cached;
}

int64_t KvCacheManager::TakeCachedPrefix(SequenceBlocks& seq, std::span<const BlockHash> prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const BlockHash& h : prefix) {
    std::optional<int32_t> block = allocator_.Lookup(h);
    if (!block && options_.num_host_blocks > 0) {
      // A hit in the host tier moves the block back up: a device block, a copy.
      if (std::optional<int32_t> host = host_allocator_.Lookup(h)) {
        absl::StatusOr<int32_t> device = allocator_.Allocate();
        SwapOutEvicted();  // what that allocation evicted is on the host before the next lookup
        if (device.ok()) {
          allocator_.Register(*device, h);
          moves_.swap_in.push_back({*device, *host, h});  // the host reference goes in TakeMoves
          ++swapped_in_;
          block = *device;
        } else {
          host_allocator_.Release(*host);
        }
      }
    }
    if (!block) break;
    seq.table.Append(*block);
    seq.hashes.push_back(h);
  }
  return static_cast<int64_t>(seq.hashes.size()) * options_.block_size;
}

std::optional<KvCacheManager::FetchPlan> KvCacheManager::PlanFetch(SequenceBlocks& seq,
                                                                   std::span<const BlockHash> rest) {
  if (options_.block_index == nullptr || rest.empty()) return std::nullopt;
  const BlockIndex::Found found = options_.block_index->LongestPrefix(rest);
  if (found.blocks == 0) return std::nullopt;
  FetchPlan plan;
  plan.peers = found.peers;
  for (int64_t i = 0; i < found.blocks; ++i) {
    plan.hashes.push_back(rest[i]);
    plan.blocks.push_back(seq.table.blocks()[seq.hashes.size() + i]);
    seq.fetching.push_back(rest[i]);
  }
  return plan;
}

int64_t KvCacheManager::FinishFetch(SequenceBlocks& seq, bool ok) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ok) {
    // The blocks hold their content now: cached, and the sequence starts after them.
    for (const BlockHash& h : seq.fetching) {
      allocator_.Register(seq.table.blocks()[seq.hashes.size()], h);
      seq.hashes.push_back(h);
    }
    remote_fetched_ += static_cast<int64_t>(seq.fetching.size());
  } else {
    ++remote_fetch_failures_;  // the blocks stay allocated and are computed instead
  }
  seq.fetching.clear();
  return static_cast<int64_t>(seq.hashes.size()) * options_.block_size;
}

absl::Status KvCacheManager::EnsureCapacity(SequenceBlocks& seq, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  return seq.table.EnsureCapacity(tokens, options_.block_size, allocator_);
}

void KvCacheManager::RegisterFullBlocks(SequenceBlocks& seq, std::span<const int32_t> tokens, int64_t computed) {
  if (options_.model_identity.empty()) return;
  std::lock_guard<std::mutex> lock(mu_);
  const int bs = options_.block_size;
  for (int64_t b = static_cast<int64_t>(seq.hashes.size()); b < computed / bs; ++b) {
    const BlockHash parent = b == 0 ? Root(seq.salt) : seq.hashes.back();
    seq.hashes.push_back(ChainHash(parent, tokens.subspan(b * bs, bs)));
    allocator_.Register(seq.table.blocks()[b], seq.hashes.back());
    CopyToHost(seq.table.blocks()[b], seq.hashes.back());  // written through
  }
}

void KvCacheManager::ReleaseBefore(SequenceBlocks& seq, int64_t first_needed, int sink_tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  const int bs = options_.block_size;
  seq.table.ReleaseFront(first_needed / bs, allocator_, (sink_tokens + bs - 1) / bs);
}

void KvCacheManager::Free(SequenceBlocks& seq) {
  std::lock_guard<std::mutex> lock(mu_);
  seq.table.Free(allocator_);
}

void KvCacheManager::AdoptHostBlocks(std::span<const std::pair<int32_t, BlockHash>> blocks) {
  std::lock_guard<std::mutex> lock(mu_);
  if (options_.num_host_blocks > 0) host_allocator_.AdoptCached(blocks);
}

void KvCacheManager::CopyToHost(int32_t block, const BlockHash& hash) {
  if (options_.num_host_blocks == 0 || host_allocator_.Contains(hash)) return;
  absl::StatusOr<int32_t> host = host_allocator_.Allocate();  // may drop the host's oldest
  (void)host_allocator_.TakeEvicted();  // the host tier is the last: its evictions are dropped
  if (!host.ok()) return;  // every host block is being swapped in this step
  host_allocator_.Register(*host, hash);
  host_allocator_.Release(*host);  // cached there, unreferenced
  moves_.swap_out.push_back({block, *host, hash});
  ++swapped_out_;
}

void KvCacheManager::SwapOutEvicted() {
  for (const auto& [block, hash] : allocator_.TakeEvicted()) CopyToHost(block, hash);
}

KvCacheManager::TierMoves KvCacheManager::TakeMoves() {
  std::lock_guard<std::mutex> lock(mu_);
  SwapOutEvicted();
  for (const BlockCopy& copy : moves_.swap_in) host_allocator_.Release(copy.host);
  return std::exchange(moves_, {});
}

KvCacheManager::Counters KvCacheManager::counters() const {
  std::lock_guard<std::mutex> lock(mu_);
  Counters c;
  c.lookups = allocator_.lookups();
  c.hits = allocator_.hits();
  c.evictions = allocator_.evictions();
  c.cached_blocks = allocator_.num_cached();
  c.free_blocks = allocator_.num_free();
  c.swapped_out = swapped_out_;
  c.swapped_in = swapped_in_;
  c.remote_fetched = remote_fetched_;
  c.remote_fetch_failures = remote_fetch_failures_;
  return c;
}

}  // namespace tessera::kvstore
