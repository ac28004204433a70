#include "kvstore/block_fetcher.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/status.h"
#include "kvstore/block_socket.h"

namespace tessera::kvstore {
namespace {

// One request on an open connection; `answered` tells whether the peer replied at all
// (a pooled connection the peer has closed meanwhile does not).
absl::Status Request(wire::Conn& conn, const BlockPeer& peer, std::span<const BlockHash> hashes, const KvLayout& layout,
                     HeadRange range, int local_first, std::span<std::byte* const> blocks, bool* answered) {
  const wire::RequestHeader header{wire::kMagic,
                             static_cast<uint32_t>(layout.num_layers),
                             static_cast<uint32_t>(layout.block_size),
                             static_cast<uint32_t>(layout.head_dim),
                             static_cast<uint32_t>(layout.dtype),
                             static_cast<uint32_t>(range.begin),
                             static_cast<uint32_t>(range.end),
                             static_cast<uint32_t>(hashes.size())};
  const auto closed = [&] { return absl::UnavailableError(absl::StrCat("block peer ", peer.address, " closed the connection")); };
  uint32_t status = 0;
  *answered = false;
  if (!conn.WriteAll(&header, sizeof(header), /*more=*/true) || !conn.WriteAll(hashes.data(), hashes.size_bytes()) ||
      !conn.ReadAll(&status, sizeof(status))) {
    return closed();
  }
  *answered = true;
  if (status == wire::kLayoutMismatch) {
    return absl::DataLossError(absl::StrCat("block peer ", peer.address, " holds blocks of another layout (its layers, ",
                                            "block size, head size or KV dtype differ from ours: ",
                                            KvDtypeName(layout.dtype), ")"));
  }
  if (status != wire::kOk) {
    return absl::DataLossError(absl::StrCat("block peer ", peer.address, " refused the request (status ", status, ")"));
  }
  // A slice of every head is the block itself: received in place.
  const bool whole = local_first == 0 && range.size() == layout.num_kv_heads;
  const size_t slice_bytes = static_cast<size_t>(SliceBytes(layout, range.size()));
  std::vector<std::byte> slice(whole ? 0 : slice_bytes);
  for (size_t i = 0; i < hashes.size(); ++i) {
    uint8_t found = 0;
    if (!conn.ReadAll(&found, 1)) return closed();
    if (found == 0) {
      return absl::NotFoundError(absl::StrCat("block peer ", peer.address, " no longer holds block ", ToHex(hashes[i])));
    }
    if (!conn.ReadAll(whole ? blocks[i] : slice.data(), slice_bytes)) return closed();
    if (!whole) CopySliceIn(layout, slice.data(), local_first, range.size(), blocks[i]);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<FetchRun>> PlanFetchRuns(std::span<const BlockPeer> peers, HeadRange want) {
  std::vector<FetchRun> runs;
  for (int h = want.begin; h < want.end;) {
    const BlockPeer* best = nullptr;
    for (const BlockPeer& p : peers) {
      if (p.heads.begin <= h && h < p.heads.end && (!best || p.heads.end > best->heads.end)) best = &p;
    }
    if (!best) return absl::FailedPreconditionError(absl::StrCat("no block peer holds KV head ", h));
    runs.push_back({best, {h, std::min(best->heads.end, want.end)}});
    h = runs.back().range.end;
  }
  return runs;
}

BlockFetcher::BlockFetcher(std::shared_ptr<const tls::SocketTls> tls) : tls_(std::move(tls)) {}

BlockFetcher::~BlockFetcher() = default;

std::unique_ptr<wire::Conn> BlockFetcher::TakeIdle(const std::string& address) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& idle = idle_[address];
  if (idle.empty()) return nullptr;
  std::unique_ptr<wire::Conn> conn = std::move(idle.back());
  idle.pop_back();
  return conn;
}

void BlockFetcher::PutIdle(const std::string& address, std::unique_ptr<wire::Conn> conn) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& idle = idle_[address];
  if (idle.size() < kMaxIdlePerPeer) idle.push_back(std::move(conn));
}

// Reuses an idle connection when there is one (once more on a new one if the peer had
// closed it meanwhile).
absl::Status BlockFetcher::FetchOnOneConnection(const FetchRun& run, std::span<const BlockHash> hashes,
                                                const KvLayout& layout, int local_first,
                                                std::span<std::byte* const> blocks, std::chrono::milliseconds timeout) {
  const BlockPeer& peer = *run.peer;
  for (bool first_try = true;; first_try = false) {
    std::unique_ptr<wire::Conn> conn = first_try ? TakeIdle(peer.address) : nullptr;
    const bool pooled = conn != nullptr;
    if (!pooled) {
      absl::StatusOr<std::unique_ptr<wire::Conn>> connected = wire::Conn::Connect(peer.address, timeout, tls_.get());
      if (!connected.ok()) return connected.status();
      conn = std::move(*connected);
    }
    conn->SetTimeouts(timeout);
    bool answered = false;
    const absl::Status result = Request(*conn, peer, hashes, layout, run.range, local_first, blocks, &answered);
    if (result.ok()) {
      PutIdle(peer.address, std::move(conn));
      return result;
    }
    // Mid-response or broken: never reused (closed here).
    if (!(pooled && !answered)) return result;
  }
}

absl::Status BlockFetcher::Fetch(std::span<const BlockPeer> peers, std::span<const BlockHash> hashes,
                                 const KvLayout& layout, HeadRange want, std::span<std::byte* const> blocks,
                                 const FetchOptions& options) {
  if (hashes.size() != blocks.size()) return absl::InvalidArgumentError("one destination block per hash");
  if (want.size() != layout.num_kv_heads) return absl::InvalidArgumentError("the wanted heads must fill the blocks");
  if (hashes.empty()) return absl::OkStatus();
  ASSIGN_OR_RETURN(const std::vector<FetchRun> runs, PlanFetchRuns(peers, want));
  // Each run's blocks are split over up to `streams` connections.
  const size_t streams = std::clamp<size_t>(static_cast<size_t>(options.streams), 1, hashes.size());
  const size_t per_stream = (hashes.size() + streams - 1) / streams;
  std::vector<absl::Status> results(runs.size() * streams);
  std::vector<std::thread> threads;
  for (size_t r = 0; r < runs.size(); ++r) {
    for (size_t s = 0; s < streams; ++s) {
      const size_t begin = s * per_stream, end = std::min(hashes.size(), begin + per_stream);
      if (begin >= end) continue;
      threads.emplace_back([&, r, s, begin, end] {
        results[r * streams + s] =
            FetchOnOneConnection(runs[r], hashes.subspan(begin, end - begin), layout, runs[r].range.begin - want.begin,
                                 blocks.subspan(begin, end - begin), options.timeout);
      });
    }
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) {
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace tessera::kvstore
