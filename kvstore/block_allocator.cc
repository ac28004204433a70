#include "kvstore/block_allocator.h"

#include "common/check.h"
#include "absl/strings/str_cat.h"

namespace tessera::kvstore {

BlockAllocator::BlockAllocator(int32_t num_blocks) : ref_counts_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<int32_t> BlockAllocator::Allocate() {
  if (free_.empty()) {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache is full: all ", num_blocks(), " blocks are in use"));
  }
  int32_t block = free_.back();
  free_.pop_back();
  ref_counts_[block] = 1;
  return block;
}

void BlockAllocator::AddRef(int32_t block) {
  TESSERA_CHECK(ref_counts_[block] > 0, "AddRef on a free block");
  ++ref_counts_[block];
}

void BlockAllocator::Release(int32_t block) {
  TESSERA_CHECK(ref_counts_[block] > 0, "Release of a free block");
  if (--ref_counts_[block] == 0) free_.push_back(block);
}

absl::Status BlockTable::EnsureCapacity(int64_t num_tokens, int block_size,
                                        BlockAllocator& allocator) {
  while (static_cast<int64_t>(blocks_.size()) * block_size < num_tokens) {
    absl::StatusOr<int32_t> block = allocator.Allocate();
    if (!block.ok()) return block.status();
    blocks_.push_back(*block);
  }
  return absl::OkStatus();
}

void BlockTable::Free(BlockAllocator& allocator) {
  for (int32_t b : blocks_) allocator.Release(b);
  blocks_.clear();
}

}  // namespace tessera::kvstore
