#include "kvstore/block_transfer.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <unordered_map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::kvstore {
namespace {

static_assert(std::endian::native == std::endian::little, "the wire format is little-endian");

constexpr uint32_t kMagic = 0x31564B54;  // "TKV1"
constexpr uint32_t kMaxBlocksPerRequest = 1 << 16;

// The request header; hashes follow.
struct RequestHeader {
  uint32_t magic;
  uint32_t num_layers, block_size, head_dim;
  uint32_t head_begin, head_end;
  uint32_t count;
};
enum ReplyStatus : uint32_t { kOk = 0, kLayoutMismatch = 1, kHeadsNotHeld = 2, kBadRequest = 3 };

bool WriteAll(int fd, const void* data, size_t n, int flags = 0) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL | flags);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = ::recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

void SetTimeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = timeout.count() / 1000;
  tv.tv_usec = (timeout.count() % 1000) * 1000;
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // also bounds connect()
}

absl::StatusOr<int> Connect(const std::string& address, std::chrono::milliseconds timeout) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError(absl::StrCat("bad block peer address ", address));
  const std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(host.c_str(), port.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot resolve block peer ", address));
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    SetTimeouts(fd, timeout);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("cannot connect to block peer ", address, ": ", strerror(errno)));
  return fd;
}

// Idle connections to block peers, kept between fetches: a warm connection skips the
// handshake and TCP slow start, which dominate small fetches over long links.
class ConnectionPool {
 public:
  static ConnectionPool& Get() {
    static ConnectionPool* pool = new ConnectionPool;  // never destroyed: used until exit
    return *pool;
  }
  // An idle connection to `address`, or -1.
  int TakeIdle(const std::string& address) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[address];
    if (idle.empty()) return -1;
    const int fd = idle.back();
    idle.pop_back();
    return fd;
  }
  void PutIdle(const std::string& address, int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[address];
    if (idle.size() >= kMaxIdlePerPeer) {
      ::close(fd);
    } else {
      idle.push_back(fd);
    }
  }

 private:
  static constexpr size_t kMaxIdlePerPeer = 16;
  std::mutex mu_;
  std::unordered_map<std::string, std::vector<int>> idle_;
};

// One request on an open connection; `answered` tells whether the peer replied at all
// (a pooled connection the peer has closed meanwhile does not).
absl::Status Request(int fd, const BlockPeer& peer, std::span<const BlockHash> hashes, const KvLayout& layout,
                     HeadRange range, int local_first, std::span<float* const> blocks, bool* answered) {
  const RequestHeader header{kMagic,
                             static_cast<uint32_t>(layout.num_layers),
                             static_cast<uint32_t>(layout.block_size),
                             static_cast<uint32_t>(layout.head_dim),
                             static_cast<uint32_t>(range.begin),
                             static_cast<uint32_t>(range.end),
                             static_cast<uint32_t>(hashes.size())};
  const auto closed = [&] { return absl::UnavailableError(absl::StrCat("block peer ", peer.address, " closed the connection")); };
  uint32_t status = 0;
  *answered = false;
  if (!WriteAll(fd, &header, sizeof(header), MSG_MORE) || !WriteAll(fd, hashes.data(), hashes.size_bytes()) ||
      !ReadAll(fd, &status, sizeof(status))) {
    return closed();
  }
  *answered = true;
  if (status != kOk) {
    return absl::DataLossError(absl::StrCat("block peer ", peer.address, " refused the request (status ", status, ")"));
  }
  // A slice of every head is the block itself: received in place.
  const bool whole = local_first == 0 && range.size() == layout.num_kv_heads;
  std::vector<float> slice(whole ? 0 : static_cast<size_t>(SliceElems(layout, range.size())));
  const size_t slice_bytes = static_cast<size_t>(SliceElems(layout, range.size())) * sizeof(float);
  for (size_t i = 0; i < hashes.size(); ++i) {
    uint8_t found = 0;
    if (!ReadAll(fd, &found, 1)) return closed();
    if (found == 0) {
      return absl::NotFoundError(absl::StrCat("block peer ", peer.address, " no longer holds block ", ToHex(hashes[i])));
    }
    if (!ReadAll(fd, whole ? blocks[i] : slice.data(), slice_bytes)) return closed();
    if (!whole) CopySliceIn(layout, slice.data(), local_first, range.size(), blocks[i]);
  }
  return absl::OkStatus();
}

// One connection's share of a fetch: `hashes` from one peer, heads `range`, written at
// local head `local_first` of the destination blocks. Reuses an idle connection when
// there is one (once more on a new one if the peer had closed it).
absl::Status FetchRun(const BlockPeer& peer, std::span<const BlockHash> hashes, const KvLayout& layout,
                      HeadRange range, int local_first, std::span<float* const> blocks,
                      std::chrono::milliseconds timeout) {
  ConnectionPool& pool = ConnectionPool::Get();
  for (bool first_try = true;; first_try = false) {
    int fd = first_try ? pool.TakeIdle(peer.address) : -1;
    const bool pooled = fd >= 0;
    if (!pooled) {
      absl::StatusOr<int> connected = Connect(peer.address, timeout);
      if (!connected.ok()) return connected.status();
      fd = *connected;
    }
    SetTimeouts(fd, timeout);
    bool answered = false;
    const absl::Status result = Request(fd, peer, hashes, layout, range, local_first, blocks, &answered);
    if (result.ok()) {
      pool.PutIdle(peer.address, fd);
      return result;
    }
    ::close(fd);  // mid-response or broken: never reused
    if (!(pooled && !answered)) return result;
  }
}

}  // namespace

int64_t SliceElems(const KvLayout& layout, int heads) {
  return static_cast<int64_t>(layout.num_layers) * 2 * heads * layout.head_elems();
}

void CopySliceOut(const KvLayout& layout, const float* block, int first, int count, float* slice) {
  const int64_t run = count * layout.head_elems();  // one layer's K or V of these heads
  for (int64_t part = 0; part < 2 * layout.num_layers; ++part) {
    std::memcpy(slice + part * run, block + part * layout.kv_elems() + first * layout.head_elems(),
                run * sizeof(float));
  }
}

void CopySliceIn(const KvLayout& layout, const float* slice, int first, int count, float* block) {
  const int64_t run = count * layout.head_elems();
  for (int64_t part = 0; part < 2 * layout.num_layers; ++part) {
    std::memcpy(block + part * layout.kv_elems() + first * layout.head_elems(), slice + part * run,
                run * sizeof(float));
  }
}

absl::StatusOr<std::unique_ptr<BlockServer>> BlockServer::Start(const std::string& host, int port,
                                                                const BlockSource* source) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port_text = std::to_string(port);
  if (getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found) != 0 || found == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("cannot resolve ", host, " for the block server"));
  }
  const int fd = ::socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  const int one = 1;
  if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const bool ok = fd >= 0 && ::bind(fd, found->ai_addr, found->ai_addrlen) == 0 && ::listen(fd, 64) == 0;
  freeaddrinfo(found);
  if (!ok) {
    const std::string why = strerror(errno);
    if (fd >= 0) ::close(fd);
    return absl::UnavailableError(absl::StrCat("block server cannot listen on ", host, ":", port, ": ", why));
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  const int bound_port = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                                           : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  return std::unique_ptr<BlockServer>(new BlockServer(fd, bound_port, source));
}

BlockServer::BlockServer(int listen_fd, int port, const BlockSource* source)
    : listen_fd_(listen_fd), port_(port), source_(source), acceptor_([this] { AcceptLoop(); }) {}

BlockServer::~BlockServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  ::close(listen_fd_);
  std::unique_lock<std::mutex> lock(mu_);
  for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
  idle_.wait(lock, [this] { return connections_.empty(); });
}

void BlockServer::AcceptLoop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      ::close(fd);
      break;
    }
    connections_.push_back(fd);
    std::thread([this, fd] { Serve(fd); }).detach();
  }
}

void BlockServer::Serve(int fd) {
  SetTimeouts(fd, std::chrono::seconds(60));  // an idle pooled connection closes after this
  RequestHeader header{};
  std::vector<BlockHash> hashes;
  std::vector<float> slice;
  // A connection may carry several requests, one after another.
  while (!stop_ && ReadAll(fd, &header, sizeof(header))) {
    const KvLayout layout = source_->layout();
    const HeadRange held = source_->heads();
    const HeadRange range{static_cast<int>(header.head_begin), static_cast<int>(header.head_end)};
    uint32_t status = kOk;
    if (header.magic != kMagic || header.count > kMaxBlocksPerRequest || range.size() <= 0) {
      status = kBadRequest;
    } else if (header.num_layers != static_cast<uint32_t>(layout.num_layers) ||
               header.block_size != static_cast<uint32_t>(layout.block_size) ||
               header.head_dim != static_cast<uint32_t>(layout.head_dim)) {
      status = kLayoutMismatch;
    } else if (!held.Contains(range)) {
      status = kHeadsNotHeld;
    }
    if (status != kOk) {
      WriteAll(fd, &status, sizeof(status));
      break;
    }
    hashes.resize(header.count);
    if (!ReadAll(fd, hashes.data(), hashes.size() * sizeof(BlockHash))) break;
    if (!WriteAll(fd, &status, sizeof(status), MSG_MORE)) break;
    slice.resize(static_cast<size_t>(SliceElems(layout, range.size())));
    bool sent = true;
    for (size_t i = 0; i < hashes.size() && sent; ++i) {
      const uint8_t found = source_->ReadSlice(hashes[i], layout, range, slice.data()) ? 1 : 0;
      blocks_served_ += found;  // counted before the peer can see it
      if (found) bytes_served_ += static_cast<int64_t>(slice.size() * sizeof(float));
      sent = WriteAll(fd, &found, 1, found ? MSG_MORE : 0) &&
             (!found || WriteAll(fd, slice.data(), slice.size() * sizeof(float)));
    }
    if (!sent) break;
  }
  std::lock_guard<std::mutex> lock(mu_);
  connections_.erase(std::find(connections_.begin(), connections_.end(), fd));
  ::close(fd);
  idle_.notify_all();
}

absl::Status FetchBlocks(std::span<const BlockPeer> peers, std::span<const BlockHash> hashes, const KvLayout& layout,
                         HeadRange want, std::span<float* const> blocks, const FetchOptions& options) {
  if (hashes.size() != blocks.size()) return absl::InvalidArgumentError("one destination block per hash");
  if (want.size() != layout.num_kv_heads) return absl::InvalidArgumentError("the wanted heads must fill the blocks");
  if (hashes.empty()) return absl::OkStatus();
  // Cover the wanted heads with runs from peers, each as long as possible.
  struct Run {
    const BlockPeer* peer;
    HeadRange range;
  };
  std::vector<Run> runs;
  for (int h = want.begin; h < want.end;) {
    const BlockPeer* best = nullptr;
    for (const BlockPeer& p : peers) {
      if (p.heads.begin <= h && h < p.heads.end && (!best || p.heads.end > best->heads.end)) best = &p;
    }
    if (!best) return absl::FailedPreconditionError(absl::StrCat("no block peer holds KV head ", h));
    runs.push_back({best, {h, std::min(best->heads.end, want.end)}});
    h = runs.back().range.end;
  }
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
            FetchRun(*runs[r].peer, hashes.subspan(begin, end - begin), layout, runs[r].range,
                     runs[r].range.begin - want.begin, blocks.subspan(begin, end - begin), options.timeout);
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
