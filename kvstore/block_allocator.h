// Block ids and their reference counts: the metadata half of a KV block pool.
//
// The allocator knows nothing about bytes; a storage (such as CpuKvStorage) holds
// them, indexed by the same ids. Running out of blocks is a normal result
// (RESOURCE_EXHAUSTED) that the caller answers by preempting, not an error path.
//
// Thread-safety: not thread-safe; one owner (the scheduler or engine) drives it.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::kvstore {

class BlockAllocator {
 public:
  explicit BlockAllocator(int32_t num_blocks);

  int32_t num_blocks() const { return static_cast<int32_t>(ref_counts_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }

  // A free block with reference count 1, or RESOURCE_EXHAUSTED.
  [[nodiscard]] absl::StatusOr<int32_t> Allocate();
  // Adds a reference to an allocated block (a shared prefix).
  void AddRef(int32_t block);
  // Drops a reference; the block returns to the free list at zero.
  void Release(int32_t block);
  int32_t ref_count(int32_t block) const { return ref_counts_[block]; }

 private:
  std::vector<int32_t> ref_counts_;
  std::vector<int32_t> free_;  // a stack: recently freed blocks are reused first (warm)
};

// The blocks of one sequence, in token order.
class BlockTable {
 public:
  // Allocates blocks until `num_tokens` tokens fit. On RESOURCE_EXHAUSTED the blocks
  // allocated by this call are kept (the caller frees or preempts the sequence).
  [[nodiscard]] absl::Status EnsureCapacity(int64_t num_tokens, int block_size,
                                            BlockAllocator& allocator);
  // Releases every block.
  void Free(BlockAllocator& allocator);

  const std::vector<int32_t>& blocks() const { return blocks_; }

 private:
  std::vector<int32_t> blocks_;
};

}  // namespace tessera::kvstore
