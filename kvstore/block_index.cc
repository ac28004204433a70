#include "kvstore/block_index.h"

#include <algorithm>
#include <cstring>

namespace tessera::kvstore {
namespace {

bool ToHash(const std::string& bytes, BlockHash* h) {
  if (bytes.size() != h->size()) return false;
  std::memcpy(h->data(), bytes.data(), h->size());
  return true;
}

// Whether the peers' heads together cover [0, num_kv_heads).
bool Covers(const std::vector<const BlockPeer*>& peers, int num_kv_heads) {
  int covered = 0;
  for (bool grew = true; grew && covered < num_kv_heads;) {
    grew = false;
    for (const BlockPeer* p : peers) {
      if (p->heads.begin <= covered && p->heads.end > covered) {
        covered = p->heads.end;
        grew = true;
      }
    }
  }
  return covered >= num_kv_heads;
}

}  // namespace

void BlockIndex::Store(const std::string& id, Worker& w, const BlockHash& h) {
  if (w.blocks.insert(h).second) holders_[h].push_back(id);
}

void BlockIndex::Remove(const std::string& id, Worker& w, const BlockHash& h) {
  if (w.blocks.erase(h) == 0) return;
  auto it = holders_.find(h);
  std::erase(it->second, id);
  if (it->second.empty()) holders_.erase(it);
}

void BlockIndex::Clear(const std::string& id, Worker& w) {
  while (!w.blocks.empty()) {
    const BlockHash h = *w.blocks.begin();  // a copy: Remove erases the element
    Remove(id, w, h);
  }
}

BlockIndex::Ack BlockIndex::Apply(const std::string& worker_id, const v1::internal::KvEvents& events) {
  std::lock_guard<std::mutex> lock(mu_);
  Worker& w = workers_[worker_id];
  w.peer = {events.kv_address(), {events.head_begin(), events.head_end()}};
  w.num_kv_heads = events.num_kv_heads();
  BlockHash h;
  if (events.snapshot()) {
    Clear(worker_id, w);
    for (const auto& e : events.events()) {
      if (e.stored() && ToHash(e.hash(), &h)) Store(worker_id, w, h);
    }
    w.seq = events.last_seq();
    return {*w.seq, false};
  }
  const uint64_t n = static_cast<uint64_t>(events.events_size());
  const uint64_t first = events.last_seq() + 1 - n;
  if (!w.seq || first > *w.seq + 1 || events.last_seq() < n) {
    ++resyncs_;  // never synced, or events were lost: only a snapshot can say what it holds
    return {w.seq.value_or(0), true};
  }
  for (uint64_t i = 0; i < n; ++i) {
    if (first + i <= *w.seq) continue;  // sent again: the ack was lost
    const auto& e = events.events(static_cast<int>(i));
    if (!ToHash(e.hash(), &h)) continue;
    if (e.stored()) {
      Store(worker_id, w, h);
    } else {
      Remove(worker_id, w, h);
    }
  }
  w.seq = std::max(*w.seq, events.last_seq());
  return {*w.seq, false};
}

void BlockIndex::RemoveWorker(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return;
  Clear(worker_id, it->second);
  workers_.erase(it);
}

BlockIndex::Found BlockIndex::LongestPrefix(std::span<const BlockHash> hashes) const {
  std::lock_guard<std::mutex> lock(mu_);
  Found found;
  std::vector<std::string> candidates;  // hold every block so far
  for (size_t i = 0; i < hashes.size(); ++i) {
    auto it = holders_.find(hashes[i]);
    if (it == holders_.end()) break;
    std::vector<std::string> next;
    for (const std::string& id : it->second) {
      if (i == 0 || std::find(candidates.begin(), candidates.end(), id) != candidates.end()) next.push_back(id);
    }
    std::vector<const BlockPeer*> peers;
    int num_kv_heads = 0;
    for (const std::string& id : next) {
      const Worker& w = workers_.at(id);
      peers.push_back(&w.peer);
      num_kv_heads = w.num_kv_heads;
    }
    if (peers.empty() || !Covers(peers, num_kv_heads)) break;
    candidates = std::move(next);
    found.blocks = static_cast<int64_t>(i) + 1;
  }
  for (const std::string& id : candidates) found.peers.push_back(workers_.at(id).peer);
  if (found.blocks == 0) found.peers.clear();
  return found;
}

int64_t BlockIndex::num_blocks() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(holders_.size());
}

int64_t BlockIndex::num_entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  int64_t n = 0;
  for (const auto& [id, w] : workers_) n += static_cast<int64_t>(w.blocks.size());
  return n;
}

int BlockIndex::num_workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(workers_.size());
}

int64_t BlockIndex::resyncs() const {
  std::lock_guard<std::mutex> lock(mu_);
  return resyncs_;
}

}  // namespace tessera::kvstore
