#include "kvstore/block_allocator.h"

#include <algorithm>

#include "common/check.h"
#include "absl/strings/str_cat.h"

namespace tessera::kvstore {

BlockAllocator::BlockAllocator(int32_t num_blocks)
    : ref_counts_(num_blocks, 0), lru_pos_(num_blocks), hash_of_(num_blocks) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::StatusOr<int32_t> BlockAllocator::Allocate() {
  int32_t block;
  if (!free_.empty()) {
    block = free_.back();
    free_.pop_back();
  } else if (!lru_.empty()) {  // evict the least recently used cached block
    block = lru_.front();
    lru_.pop_front();
    by_hash_.erase(*hash_of_[block]);
    evicted_.emplace_back(block, *hash_of_[block]);
    hash_of_[block].reset();
    ++evictions_;
  } else {
    return absl::ResourceExhaustedError(
        absl::StrCat("KV cache is full: all ", num_blocks(), " blocks are in use"));
  }
  ref_counts_[block] = 1;
  return block;
}

std::optional<int32_t> BlockAllocator::Lookup(const BlockHash& hash) {
  ++lookups_;
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end()) return std::nullopt;
  ++hits_;
  const int32_t block = it->second;
  if (ref_counts_[block]++ == 0) lru_.erase(lru_pos_[block]);
  return block;
}

void BlockAllocator::Register(int32_t block, const BlockHash& hash) {
  TESSERA_CHECK(ref_counts_[block] > 0, "Register of an unreferenced block");
  if (hash_of_[block] || by_hash_.contains(hash)) return;
  by_hash_.emplace(hash, block);
  hash_of_[block] = hash;
}

void BlockAllocator::AdoptCached(std::span<const std::pair<int32_t, BlockHash>> blocks) {
  std::vector<bool> adopted(ref_counts_.size(), false);
  for (const auto& [block, hash] : blocks) {
    if (block < 0 || block >= num_blocks() || ref_counts_[block] != 0 || hash_of_[block] || by_hash_.contains(hash)) {
      continue;
    }
    by_hash_.emplace(hash, block);
    hash_of_[block] = hash;
    lru_pos_[block] = lru_.insert(lru_.end(), block);
    adopted[block] = true;
  }
  std::erase_if(free_, [&](int32_t b) { return adopted[b]; });
}

void BlockAllocator::AddRef(int32_t block) {
  TESSERA_CHECK(ref_counts_[block] > 0, "AddRef on a free block");
  ++ref_counts_[block];
}

void BlockAllocator::Release(int32_t block) {
  TESSERA_CHECK(ref_counts_[block] > 0, "Release of a free block");
  if (--ref_counts_[block] > 0) return;
  if (hash_of_[block]) {
    lru_pos_[block] = lru_.insert(lru_.end(), block);  // stays cached, most recent last
  } else {
    free_.push_back(block);
  }
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

void BlockTable::ReleaseFront(int64_t count, BlockAllocator& allocator, int64_t keep) {
  const int64_t size = static_cast<int64_t>(blocks_.size());
  if (released_ == kept_) kept_ = released_ = std::max(released_, std::min(keep, size));  // none released yet
  for (; released_ < std::min(count, size); ++released_) allocator.Release(blocks_[released_]);
}

void BlockTable::Free(BlockAllocator& allocator) {
  for (int64_t b = 0; b < std::min<int64_t>(kept_, blocks_.size()); ++b) allocator.Release(blocks_[b]);
  for (int64_t b = released_; b < static_cast<int64_t>(blocks_.size()); ++b) allocator.Release(blocks_[b]);
  blocks_.clear();
  kept_ = released_ = 0;
}

}  // namespace tessera::kvstore
