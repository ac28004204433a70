// kv_transfer_bench: the KV store's data movement, on TinyLlama-1.1B-shaped blocks
// (22 layers, 4 KV heads of 64, 16 tokens: 704 KiB of float32 per block).
//
//   kv_transfer_bench serve --listen HOST:PORT [--blocks N]
//       fills a worker host tier (kvstore::HostTier) with N blocks and serves it with
//       the block server until killed
//   kv_transfer_bench fetch --peer HOST:PORT [--blocks N] [--streams S] [--repeat R]
//       fetches the N blocks R times over the data plane; prints GB/s
//   kv_transfer_bench swap [--blocks N] [--repeat R]
//       copies N blocks device pool -> host tier and back (the swap-out / swap-in
//       path of a CPU worker); prints GB/s each way
//
// bench/kv_transfer_bench.sh runs `fetch` between two network namespaces next to
// iperf3 over the same veth link.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "cli/args.h"
#include "kvstore/block_fetcher.h"
#include "kvstore/block_server.h"
#include "kvstore/host_tier.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr kvstore::KvLayout kLayout{/*num_layers=*/22, /*num_kv_heads=*/4, /*head_dim=*/64, /*block_size=*/16};
constexpr kvstore::HeadRange kHeads{0, 4};

kvstore::BlockHash HashOf(int i) {
  kvstore::BlockHash h{};
  for (int b = 0; b < 4; ++b) h[b] = static_cast<uint8_t>(i >> (8 * b));
  return h;
}

std::vector<kvstore::BlockHash> Hashes(int n) {
  std::vector<kvstore::BlockHash> h;
  for (int i = 0; i < n; ++i) h.push_back(HashOf(i));
  return h;
}

// A device pool of n blocks with distinct contents.
std::vector<std::byte> DevicePool(int n) {
  std::vector<std::byte> pool(static_cast<size_t>(kLayout.block_bytes()) * n);
  for (size_t i = 0; i < pool.size(); ++i) pool[i] = static_cast<std::byte>(i % 251);
  return pool;
}

// The copies of a CPU worker's swaps, device pool <-> host tier: blocks [0, n) in one
// batch each way, as a step's swaps go.
absl::Status StoreAll(kvstore::HostTier& tier, int n, const std::vector<std::byte>& pool) {
  std::vector<kvstore::HostTier::Stored> stored;
  for (int i = 0; i < n; ++i) stored.push_back({i, HashOf(i)});
  return tier.Store(stored, [&](std::span<std::byte* const> hosts) {
    for (int i = 0; i < n; ++i) {
      std::memcpy(hosts[i], pool.data() + i * kLayout.block_bytes(), kLayout.block_bytes());
    }
    return absl::OkStatus();
  });
}

absl::Status LoadAll(const kvstore::HostTier& tier, int n, std::vector<std::byte>& pool) {
  std::vector<int32_t> blocks(n);
  std::iota(blocks.begin(), blocks.end(), 0);
  return tier.Load(blocks, [&](std::span<const std::byte* const> hosts) {
    for (int i = 0; i < n; ++i) {
      std::memcpy(pool.data() + i * kLayout.block_bytes(), hosts[i], kLayout.block_bytes());
    }
    return absl::OkStatus();
  });
}

void Fill(kvstore::HostTier& tier, const std::vector<std::byte>& pool, int n) {
  tier.Reset(kLayout, kHeads, kHeads.end, n);
  (void)StoreAll(tier, n, pool);
}

double GBps(double bytes, Clock::duration d) { return bytes / std::chrono::duration<double>(d).count() / 1e9; }

int Fail(const std::string& m) {
  std::fprintf(stderr, "kv_transfer_bench: %s\n", m.c_str());
  return kUsageExit;
}

int Serve(const cli::Args& args, int blocks) {
  if (!args.Has("listen")) return Fail("serve needs --listen HOST:PORT");
  const std::string listen = args.flags.at("listen");
  int port = 0;
  if (!absl::SimpleAtoi(listen.substr(listen.rfind(':') + 1), &port)) return Fail("bad --listen");
  kvstore::HostTier tier;
  Fill(tier, DevicePool(blocks), blocks);
  auto server = kvstore::BlockServer::Start(listen.substr(0, listen.rfind(':')), port, &tier);
  if (!server.ok()) return Fail(std::string(server.status().message()));
  std::printf("serving %d blocks on port %d\n", blocks, (*server)->port());
  std::fflush(stdout);
  while (true) std::this_thread::sleep_for(std::chrono::hours(1));
}

int Fetch(const cli::Args& args, int blocks, int repeat) {
  std::string error;
  int streams;
  if (!cli::IntFlag(args, "streams", 4, 1, &streams, &error)) return Fail(error);
  if (!args.Has("peer")) return Fail("fetch needs --peer HOST:PORT");
  const kvstore::BlockPeer peers[] = {{args.flags.at("peer"), kHeads}};
  const std::vector<kvstore::BlockHash> hashes = Hashes(blocks);
  std::vector<std::byte> pool = DevicePool(blocks);
  std::vector<std::byte*> dst;
  for (int i = 0; i < blocks; ++i) dst.push_back(pool.data() + i * kLayout.block_bytes());
  const double bytes = static_cast<double>(kLayout.block_bytes()) * blocks;
  double best = 0, total = 0;
  kvstore::BlockFetcher fetcher;  // connections kept between repeats
  for (int r = 0; r < repeat; ++r) {
    const auto start = Clock::now();
    const absl::Status s = fetcher.Fetch(peers, hashes, kLayout, kHeads, dst, {.streams = streams});
    const double gbps = GBps(bytes, Clock::now() - start);
    if (!s.ok()) return Fail(std::string(s.message()));
    best = std::max(best, gbps);
    total += gbps;
  }
  std::printf("fetch %d blocks (%.1f MB) x %d, %d streams: mean %.3f GB/s, best %.3f GB/s\n", blocks, bytes / 1e6,
              repeat, streams, total / repeat, best);
  return 0;
}

int Swap(int blocks, int repeat) {
  std::vector<std::byte> pool = DevicePool(blocks);
  kvstore::HostTier tier;
  Fill(tier, pool, blocks);  // first touch of the host pages, outside the timing
  const double bytes = static_cast<double>(kLayout.block_bytes()) * blocks;
  double out = 0, in = 0;
  for (int r = 0; r < repeat; ++r) {
    auto start = Clock::now();
    (void)StoreAll(tier, blocks, pool);
    out = std::max(out, GBps(bytes, Clock::now() - start));
    start = Clock::now();
    (void)LoadAll(tier, blocks, pool);
    in = std::max(in, GBps(bytes, Clock::now() - start));
  }
  std::printf("swap %d blocks (%.1f MB), best of %d: device->host %.2f GB/s, host->device %.2f GB/s\n", blocks,
              bytes / 1e6, repeat, out, in);
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  using namespace tessera;
  cli::Args args;
  std::string error;
  if (!cli::ParseArgs(argc, argv, {"help"}, &args, &error) || args.Has("help") ||
      !cli::CheckFlags(args, {"listen", "peer", "blocks", "streams", "repeat"}, &error)) {
    if (!error.empty()) std::fprintf(stderr, "kv_transfer_bench: %s\n", error.c_str());
    std::fprintf(stderr, "usage: kv_transfer_bench serve --listen HOST:PORT [--blocks N]\n"
                         "       kv_transfer_bench fetch --peer HOST:PORT [--blocks N] [--streams S] [--repeat R]\n"
                         "       kv_transfer_bench swap [--blocks N] [--repeat R]\n");
    return args.Has("help") ? 0 : 2;
  }
  int blocks, repeat;
  if (!cli::IntFlag(args, "blocks", 256, 1, &blocks, &error) || !cli::IntFlag(args, "repeat", 10, 1, &repeat, &error)) {
    return bench::Fail(error);
  }
  if (args.command == "serve") return bench::Serve(args, blocks);
  if (args.command == "fetch") return bench::Fetch(args, blocks, repeat);
  if (args.command == "swap") return bench::Swap(blocks, repeat);
  return bench::Fail("unknown command '" + args.command + "'");
}
