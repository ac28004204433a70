// HostTier: the worker's host tier of the KV store. Cold and written-through cached
// blocks live here (pinned memory on a GPU worker; ordinary memory on a CPU one), each
// under the content hash the coordinator named when it copied the block down. It is
// also what the worker's BlockServer serves to peers, and it numbers every change
// (stored / removed) for the coordinator's cluster-wide block index, which follows
// the events through heartbeats and asks for a snapshot after a gap or a restart.
//
// The tier outlives a model reload with the same layout, so a restarted coordinator
// finds the blocks still there.
//
// Thread-safety: all methods may be called from any thread (the step thread copies,
// the block server reads, the heartbeat thread reports).
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "kvstore/block_server.h"
#include "kvstore/cpu_kv_storage.h"
#include "tessera/v1/internal/worker.pb.h"

namespace tessera::kvstore {

class HostTier final : public BlockSource {
 public:
  HostTier() = default;

  // Sizes the tier for blocks of `layout` holding KV heads `heads` of `num_kv_heads`.
  // Keeps the blocks when nothing changes; otherwise every block is removed.
  void Reset(const KvLayout& layout, HeadRange heads, int num_kv_heads, int32_t num_blocks);
  int32_t num_blocks() const;
  // The blocks held, for a reload that kept them.
  std::vector<std::pair<int32_t, BlockHash>> Contents() const;

  // A block to store and the content hash it will hold.
  struct Stored {
    int32_t block;
    BlockHash hash;
  };
  // Fills the host blocks through `write` (given their addresses, in order: copies out
  // of the device pool, done when it returns) and records that they now hold their
  // hashes; on an error none of them holds anything.
  absl::Status Store(std::span<const Stored> blocks,
                     const std::function<absl::Status(std::span<std::byte* const> host_blocks)>& write);
  // Hands host blocks `blocks` (their addresses, in order) to `read`: copies into the
  // device pool.
  absl::Status Load(std::span<const int32_t> blocks,
                    const std::function<absl::Status(std::span<const std::byte* const> host_blocks)>& read) const;
  // The tier's memory, for a GPU engine to pin (valid until the next Reset).
  std::span<std::byte> memory() const;

  KvLayout layout() const override;
  HeadRange heads() const override;
  bool ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange range,
                 std::byte* slice) const override;

  // The events the coordinator has not acknowledged (or a snapshot, when it asked for
  // one), with where peers fetch blocks from.
  void FillEvents(const std::string& kv_address, v1::internal::KvEvents* out) const;
  // The coordinator's answer: forget events up to `acked_seq`; `resync`: send a
  // snapshot next time.
  void Ack(uint64_t acked_seq, bool resync);

 private:
  void Record(bool stored, const BlockHash& hash);  // under mu_

  // Events kept for the coordinator before giving up and sending a snapshot instead.
  static constexpr size_t kMaxPendingEvents = 1 << 16;

  mutable std::shared_mutex mu_;
  std::unique_ptr<CpuKvStorage> storage_;
  HeadRange heads_;
  int num_kv_heads_ = 0;
  std::vector<std::optional<BlockHash>> hash_of_;  // by block
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> by_hash_;

  struct Event {
    uint64_t seq;
    bool stored;
    BlockHash hash;
  };
  std::deque<Event> pending_;  // not yet acknowledged
  uint64_t seq_ = 0;           // number of the last event
  bool need_snapshot_ = false;
};

}  // namespace tessera::kvstore
