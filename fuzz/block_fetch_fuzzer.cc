// The KV data plane's fetching side (kvstore::BlockFetcher::Fetch) reading a hostile
// or broken peer's replies: statuses, found flags and block bytes, cut short anywhere.
// The first input byte picks the fetch (1..4 blocks; one peer holding every head, or
// two peers holding half each, so slices are copied in); the rest is what each peer
// answers before hanging up. Never a crash, a hang or a write outside the
// destination blocks; the fetch ends with OK or a status.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "kvstore/block_fetcher.h"

namespace {

using namespace tessera::kvstore;

constexpr KvLayout kLayout{.num_layers = 2, .num_kv_heads = 2, .head_dim = 4, .block_size = 2, .dtype = tessera::KvDtype::kInt8};
constexpr std::byte kGuard{0xEE};  // what no reply may write past a destination block

// A loopback listener, opened once, for one peer: each peer has its own, so that no
// fetch reuses a connection of another peer from the fetcher's idle pool (the replies
// here are not real peers' and may leave unread bytes behind).
struct Listener {
  int fd = -1;
  int port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || listen(fd, 16) != 0 ||
        getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      std::abort();
    }
    port = ntohs(addr.sin_port);
  }
};

// Accepts the fetcher's connection to one peer; it gets `reply` and then the end of
// the stream, while its request is read and dropped.
void Answer(const Listener& listener, std::string_view reply) {
  const int fd = accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC);
  if (fd < 0) std::abort();
  std::thread drainer([fd] {
    char buffer[1 << 12];
    while (read(fd, buffer, sizeof(buffer)) > 0) {
    }
  });
  for (size_t done = 0; done < reply.size();) {
    const ssize_t n = send(fd, reply.data() + done, reply.size() - done, MSG_NOSIGNAL);
    if (n <= 0) break;  // the fetcher hung up first
    done += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  drainer.join();
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Listener listeners[2];
  tessera::fuzz::FuzzInput in(data, size);
  const uint8_t shape = in.Byte();
  const size_t count = 1 + shape % 4;
  const bool split = shape & 4;
  const std::string_view reply = in.Rest();

  const auto address = [](const Listener& l) { return "127.0.0.1:" + std::to_string(l.port); };
  std::vector<BlockPeer> peers;
  if (split) {
    peers = {{address(listeners[0]), {0, 1}}, {address(listeners[1]), {1, 2}}};
  } else {
    peers = {{address(listeners[0]), {0, 2}}};
  }
  std::vector<BlockHash> hashes(count);
  for (size_t i = 0; i < count; ++i) hashes[i].fill(static_cast<uint8_t>(i));
  // Each destination with a guard block after it: anything written past a block shows.
  const size_t block = static_cast<size_t>(kLayout.block_bytes());
  std::vector<std::byte> memory(count * 2 * block, kGuard);
  std::vector<std::byte*> blocks(count);
  for (size_t i = 0; i < count; ++i) blocks[i] = memory.data() + 2 * i * block;

  std::vector<std::thread> servers;
  for (size_t p = 0; p < peers.size(); ++p) servers.emplace_back([&, p] { Answer(listeners[p], reply); });
  {
    BlockFetcher fetcher;  // a fresh one each time: no connection kept between inputs
    const absl::Status s = fetcher.Fetch(peers, hashes, kLayout, {0, 2}, blocks,
                                         {.streams = 1, .timeout = std::chrono::milliseconds(2000)});
    (void)s;
  }
  for (auto& t : servers) t.join();
  for (size_t i = 0; i < count; ++i) {
    for (size_t e = 0; e < block; ++e) {
      if (memory[(2 * i + 1) * block + e] != kGuard) std::abort();  // written past block i
    }
  }
  return 0;
}
