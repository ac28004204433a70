#include "kvstore/host_tier.h"

namespace tessera::kvstore {

void HostTier::Reset(const KvLayout& layout, HeadRange heads, int num_kv_heads,
                     int32_t num_blocks) {
  std::unique_lock lock(mu_);
  if (storage_ && storage_->layout() == layout && storage_->num_blocks() == num_blocks &&
      heads_.begin == heads.begin && heads_.end == heads.end && num_kv_heads_ == num_kv_heads) {
    return;
  }
  for (const auto& h : hash_of_) {
    if (h) Record(false, *h);
  }
  storage_ = std::make_unique<CpuKvStorage>(layout, num_blocks);
  heads_ = heads;
  num_kv_heads_ = num_kv_heads;
  hash_of_.assign(num_blocks, std::nullopt);
  by_hash_.clear();
}

int32_t HostTier::num_blocks() const {
  std::shared_lock lock(mu_);
  return storage_ ? storage_->num_blocks() : 0;
}

std::vector<std::pair<int32_t, BlockHash>> HostTier::Contents() const {
  std::shared_lock lock(mu_);
  std::vector<std::pair<int32_t, BlockHash>> out;
  for (const auto& [hash, block] : by_hash_) out.emplace_back(block, hash);
  return out;
}

absl::Status HostTier::Store(std::span<const Stored> blocks,
                             const std::function<absl::Status(std::span<std::byte* const> host_blocks)>& write) {
  std::unique_lock lock(mu_);
  std::vector<std::byte*> hosts;
  for (const Stored& s : blocks) hosts.push_back(storage_->block(s.block));
  const absl::Status written = write(hosts);
  for (const Stored& s : blocks) {
    if (written.ok() && hash_of_[s.block] == s.hash) continue;
    if (hash_of_[s.block]) {  // its old content is gone, whatever happens next
      by_hash_.erase(*hash_of_[s.block]);
      Record(false, *hash_of_[s.block]);
      hash_of_[s.block].reset();
    }
    if (!written.ok()) continue;
    // The same content in another block: that copy goes (the coordinator reuses it).
    if (auto it = by_hash_.find(s.hash); it != by_hash_.end()) {
      hash_of_[it->second].reset();
      by_hash_.erase(it);
      Record(false, s.hash);
    }
    hash_of_[s.block] = s.hash;
    by_hash_[s.hash] = s.block;
    Record(true, s.hash);
  }
  return written;
}

absl::Status HostTier::Load(std::span<const int32_t> blocks,
                            const std::function<absl::Status(std::span<const std::byte* const> host_blocks)>& read) const {
  std::shared_lock lock(mu_);
  std::vector<const std::byte*> hosts;
  for (int32_t b : blocks) hosts.push_back(storage_->block(b));
  return read(hosts);
}

std::span<std::byte> HostTier::memory() const {
  std::shared_lock lock(mu_);
  if (!storage_) return {};
  return {storage_->data(), static_cast<size_t>(storage_->layout().block_bytes()) * storage_->num_blocks()};
}

KvLayout HostTier::layout() const {
  std::shared_lock lock(mu_);
  return storage_ ? storage_->layout() : KvLayout{};
}

HeadRange HostTier::heads() const {
  std::shared_lock lock(mu_);
  return heads_;
}

bool HostTier::ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange range,
                         std::byte* slice) const {
  std::shared_lock lock(mu_);
  auto it = by_hash_.find(hash);
  if (it == by_hash_.end() || !(storage_->layout() == layout) || !heads_.Contains(range)) return false;
  CopySliceOut(layout, storage_->block(it->second), range.begin - heads_.begin, range.size(), slice);
  return true;
}

void HostTier::Record(bool stored, const BlockHash& hash) {
  pending_.push_back({++seq_, stored, hash});
  if (pending_.size() > kMaxPendingEvents) {
    pending_.clear();  // the coordinator is far behind: a snapshot replaces them
    need_snapshot_ = true;
  }
}

void HostTier::FillEvents(const std::string& kv_address, v1::internal::KvEvents* out) const {
  std::shared_lock lock(mu_);
  out->set_kv_address(kv_address);
  out->set_head_begin(heads_.begin);
  out->set_head_end(heads_.end);
  out->set_num_kv_heads(num_kv_heads_);
  out->set_last_seq(seq_);
  out->set_snapshot(need_snapshot_);
  auto add = [&](bool stored, const BlockHash& hash) {
    auto* e = out->add_events();
    e->set_stored(stored);
    e->set_hash(hash.data(), hash.size());
  };
  if (need_snapshot_) {
    for (const auto& [hash, block] : by_hash_) add(true, hash);
  } else {
    for (const Event& e : pending_) add(e.stored, e.hash);
  }
}

void HostTier::Ack(uint64_t acked_seq, bool resync) {
  std::unique_lock lock(mu_);
  while (!pending_.empty() && pending_.front().seq <= acked_seq) pending_.pop_front();
  need_snapshot_ = resync;
  if (resync) pending_.clear();
}

}  // namespace tessera::kvstore
