// Block ids, their reference counts and the prefix cache: the metadata half of a KV
// block pool.
//
// The allocator knows nothing about bytes; a storage (such as CpuKvStorage) holds
// them, indexed by the same ids. A full block can be registered under its content
// hash (block_hash.h); when its last reference goes it stays cached (its bytes
// intact) and a later Lookup of the same hash takes it back. Allocation takes never-
// used or freed blocks first and evicts the least recently used cached block only
// when none is left. Running out of blocks is a normal result (RESOURCE_EXHAUSTED)
// that the caller answers by preempting, not an error path.
//
// Thread-safety: not thread-safe; one owner (the scheduler or engine) drives it.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <span>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "kvstore/block_hash.h"

namespace tessera::kvstore {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  // Blocks Allocate can hand out: free ones and unreferenced cached ones.
  int32_t num_free() const { return static_cast<int32_t>(free_.size() + lru_.size()); }
  int32_t num_cached() const { return static_cast<int32_t>(by_hash_.size()); }

  // A block with reference count 1, or RESOURCE_EXHAUSTED.
  [[nodiscard]] absl::StatusOr<int32_t> Allocate();
  // Adds a reference to an allocated block (a shared prefix).
  void AddRef(int32_t block);
  // Drops a reference; at zero the block is cached (if registered) or free.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }

  // The cached block holding `hash`, with a new reference; nullopt on a miss.
  std::optional<int32_t> Lookup(const BlockHash& hash);
  // Whether `hash` is cached (no reference taken, not counted as a lookup).
  bool Contains(const BlockHash& hash) const { return by_hash_.contains(hash); }
  // Records that `block` (full, referenced) holds the content `hash`. A hash already
  // cached in another block keeps that block.
  void Register(int32_t block, const BlockHash& hash);

  // Takes free blocks that already hold cached content (a store that outlived its
  // allocator: a worker's host tier after a coordinator restart) as cached and
  // unreferenced. Blocks not free, or hashes already cached, are skipped.
  void AdoptCached(std::span<const std::pair<int32_t, BlockHash>> blocks);

  // Cached blocks evicted since the last call, with the content they held (the
  // caller may move that content down a tier before the block is overwritten).
  std::vector<std::pair<int32_t, BlockHash>> TakeEvicted() { return std::exchange(evicted_, {}); }

  int64_t lookups() const { return lookups_; }
  int64_t hits() const { return hits_; }
  int64_t evictions() const { return evictions_; }

 private:
  std::vector<int32_t> ref_counts_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first (warm)
  std::list<int32_t> lru_;     // unreferenced cached blocks, least recently used first
  std::vector<std::list<int32_t>::iterator> lru_pos_;  // valid while the block is in lru_
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> by_hash_;
  std::vector<std::optional<BlockHash>> hash_of_;
  int64_t lookups_ = 0, hits_ = 0, evictions_ = 0;
  std::vector<std::pair<int32_t, BlockHash>> evicted_;
};

// The blocks of one sequence, in token order.
class BlockTable {
 public:
  // Allocates blocks until `num_tokens` tokens fit. On RESOURCE_EXHAUSTED the blocks
  // allocated by this call are kept (the caller frees or preempts the sequence).
  [[nodiscard]] absl::Status EnsureCapacity(int64_t num_tokens, int block_size,
                                            BlockAllocator& allocator);
  // Appends a block the caller already holds a reference to (a cached prefix block).
  void Append(int32_t block) { blocks_.push_back(block); }
  // Releases the table's first `count` blocks but the first `keep` (those still held),
  // for a sequence that will never read them again (a sliding window has passed them;
  // the kept ones hold its attention sinks). Their entries stay, so positions keep
  // their blocks, but name blocks others may now hold. `keep` is the same every call.
  void ReleaseFront(int64_t count, BlockAllocator& allocator, int64_t keep = 0);
  // Releases every block still held.
  void Free(BlockAllocator& allocator);

  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  std::vector<int32_t> blocks_;
  // Entries [kept_, released_) are released: those before the kept ones and after are held.
  int64_t kept_ = 0, released_ = 0;
};

}  // namespace tessera::kvstore
