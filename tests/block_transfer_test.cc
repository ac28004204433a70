// The KV data plane over real loopback sockets: whole blocks, head slices across
// tensor-parallel layouts (bit-exact), and every failure a fetch can meet. The blocks
// are of an int8 cache (each head record carries its scales), moved as bytes.
#include <cstring>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "kvstore/block_fetcher.h"
#include "kvstore/block_server.h"
#include "kvstore/block_socket.h"
#include "tests/test_certificates.h"

namespace tessera::kvstore {
namespace {

constexpr KvLayout kFull{/*num_layers=*/3, /*num_kv_heads=*/4, /*head_dim=*/8, /*block_size=*/4, KvDtype::kInt8};
constexpr std::byte kUnwritten{0xEE};  // what destination blocks hold before a fetch

KvLayout WithHeads(int heads) {
  KvLayout l = kFull;
  l.num_kv_heads = heads;
  return l;
}

BlockHash HashOf(int i) {
  BlockHash h{};
  h[0] = static_cast<uint8_t>(i);
  h[31] = 0xAB;
  return h;
}

// Blocks of the full layout with distinct contents, by index.
std::vector<std::byte> FullBlock(int i) {
  std::vector<std::byte> b(kFull.block_bytes());
  for (size_t e = 0; e < b.size(); ++e) b[e] = static_cast<std::byte>((i * 131 + e * 7) % 251);
  return b;
}

// A peer holding heads [range) of blocks 0..n-1, as a tensor-parallel rank would.
class MapSource : public BlockSource {
 public:
  MapSource(HeadRange range, int n) : layout_(WithHeads(range.size())), range_(range) {
    for (int i = 0; i < n; ++i) {
      std::vector<std::byte> full = FullBlock(i), mine(layout_.block_bytes());
      CopySliceOut(kFull, full.data(), range.begin, range.size(), mine.data());
      blocks_[HashOf(i)] = std::move(mine);
    }
  }
  KvLayout layout() const override { return layout_; }
  HeadRange heads() const override { return range_; }
  bool ReadSlice(const BlockHash& hash, const KvLayout& layout, HeadRange r, std::byte* slice) const override {
    auto it = blocks_.find(hash);
    if (it == blocks_.end() || !(layout == layout_)) return false;
    CopySliceOut(layout_, it->second.data(), r.begin - range_.begin, r.size(), slice);
    return true;
  }

 private:
  KvLayout layout_;
  HeadRange range_;
  std::map<BlockHash, std::vector<std::byte>> blocks_;
};

struct Served {
  std::unique_ptr<MapSource> source;
  std::unique_ptr<BlockServer> server;
  BlockPeer peer() const { return {"127.0.0.1:" + std::to_string(server->port()), source->heads()}; }
};

Served Serve(HeadRange range, int n, std::shared_ptr<const tls::SocketTls> tls = nullptr) {
  Served s{std::make_unique<MapSource>(range, n), nullptr};
  auto server = BlockServer::Start("127.0.0.1", 0, s.source.get(), std::move(tls));
  EXPECT_TRUE(server.ok()) << server.status();
  s.server = std::move(*server);
  return s;
}

// Destination blocks for `heads` heads, pre-filled with a value no fetch writes.
struct Destination {
  std::vector<std::vector<std::byte>> blocks;
  std::vector<std::byte*> pointers;
  Destination(int n, int heads) : blocks(n, std::vector<std::byte>(WithHeads(heads).block_bytes(), kUnwritten)) {
    for (auto& b : blocks) pointers.push_back(b.data());
  }
};

std::vector<BlockHash> Hashes(int n) {
  std::vector<BlockHash> h;
  for (int i = 0; i < n; ++i) h.push_back(HashOf(i));
  return h;
}

// The planner covers the wanted heads with the fewest, longest runs, and names a head
// no peer holds.
TEST(BlockTransferTest, PlannerTakesTheLongestRunsAndNamesAMissingHead) {
  const BlockPeer peers[] = {{"a:1", {0, 2}}, {"b:1", {0, 4}}, {"c:1", {4, 6}}};
  absl::StatusOr<std::vector<FetchRun>> runs = PlanFetchRuns(peers, {1, 6});
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].peer->address, "b:1");
  EXPECT_EQ((*runs)[0].range.begin, 1);
  EXPECT_EQ((*runs)[0].range.end, 4);
  EXPECT_EQ((*runs)[1].peer->address, "c:1");
  EXPECT_EQ((*runs)[1].range.end, 6);
  const absl::Status missing = PlanFetchRuns(peers, {0, 8}).status();
  EXPECT_EQ(missing.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.message().find("KV head 6"), std::string::npos) << missing;
}

TEST(BlockTransferTest, FetchesWholeBlocksOverSeveralStreams) {
  BlockFetcher fetcher;
  Served a = Serve({0, 4}, 10);
  Destination d(10, 4);
  const BlockPeer peers[] = {a.peer()};
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(10), kFull, {0, 4}, d.pointers, {.streams = 3}).ok());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(d.blocks[i], FullBlock(i)) << i;
  EXPECT_EQ(a.server->blocks_served(), 10);
}

TEST(BlockTransferTest, CacheWrittenAtTp2IsReadBitExactAtTp1) {
  BlockFetcher fetcher;
  Served rank0 = Serve({0, 2}, 5), rank1 = Serve({2, 4}, 5);
  Destination d(5, 4);
  const BlockPeer peers[] = {rank0.peer(), rank1.peer()};
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(5), kFull, {0, 4}, d.pointers).ok());
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(d.blocks[i], FullBlock(i)) << i;
  }
}

TEST(BlockTransferTest, ATp4RankTakesOnlyItsHeadsFromATp1Peer) {
  BlockFetcher fetcher;
  Served whole = Serve({0, 4}, 3);
  Destination d(3, 1);
  const BlockPeer peers[] = {whole.peer()};
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(3), WithHeads(1), {2, 3}, d.pointers).ok());
  for (int i = 0; i < 3; ++i) {
    std::vector<std::byte> want(WithHeads(1).block_bytes());
    CopySliceOut(kFull, FullBlock(i).data(), 2, 1, want.data());
    EXPECT_EQ(d.blocks[i], want);
  }
}

TEST(BlockTransferTest, ABlockThePeerNoLongerHoldsIsNotFound) {
  BlockFetcher fetcher;
  Served a = Serve({0, 4}, 2);
  Destination d(3, 4);
  const BlockPeer peers[] = {a.peer()};
  EXPECT_EQ(fetcher.Fetch(peers, Hashes(3), kFull, {0, 4}, d.pointers).code(), absl::StatusCode::kNotFound);
}

TEST(BlockTransferTest, HeadsNoPeerHoldsFailBeforeConnecting) {
  BlockFetcher fetcher;
  Served a = Serve({0, 2}, 2);
  Destination d(2, 4);
  const BlockPeer peers[] = {a.peer()};
  EXPECT_EQ(fetcher.Fetch(peers, Hashes(2), kFull, {0, 4}, d.pointers).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(BlockTransferTest, ALayoutMismatchIsRefused) {
  BlockFetcher fetcher;
  Served a = Serve({0, 4}, 2);
  KvLayout other = kFull;
  other.head_dim = 16;
  Destination d(2, 4);
  for (auto& b : d.blocks) b.resize(other.block_bytes());
  for (size_t i = 0; i < d.blocks.size(); ++i) d.pointers[i] = d.blocks[i].data();
  const BlockPeer peers[] = {a.peer()};
  EXPECT_EQ(fetcher.Fetch(peers, Hashes(2), other, {0, 4}, d.pointers).code(), absl::StatusCode::kDataLoss);
}

// Blocks of another cache dtype are never mixed in: the same shape in f32 is refused,
// with the reason.
TEST(BlockTransferTest, AKvDtypeMismatchIsRefused) {
  BlockFetcher fetcher;
  Served a = Serve({0, 4}, 2);
  KvLayout f32 = kFull;
  f32.dtype = KvDtype::kF32;
  std::vector<std::vector<std::byte>> blocks(2, std::vector<std::byte>(f32.block_bytes(), kUnwritten));
  std::vector<std::byte*> pointers = {blocks[0].data(), blocks[1].data()};
  const BlockPeer peers[] = {a.peer()};
  const absl::Status refused = fetcher.Fetch(peers, Hashes(2), f32, {0, 4}, pointers);
  EXPECT_EQ(refused.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(refused.message().find("KV dtype"), std::string::npos) << refused;
  EXPECT_EQ(blocks[0], std::vector<std::byte>(f32.block_bytes(), kUnwritten));
}

// Header fields a hostile peer chooses (found by fuzz/block_wire_fuzzer.cc: head
// numbers past INT_MAX overflowed the head count): each is a bad request, answered
// with a status, and the server goes on serving.
TEST(BlockTransferTest, HostileHeadersAreBadRequests) {
  Served a = Serve({0, 4}, 1);
  constexpr uint32_t kInt8 = static_cast<uint32_t>(KvDtype::kInt8);
  const wire::RequestHeader bad[] = {
      {wire::kMagic, 3, 4, 8, kInt8, 0x80000200u, 0x20000u, 1},  // the fuzzer's: begin past INT_MAX
      {wire::kMagic, 3, 4, 8, kInt8, 0u, 0xFFFFFFFFu, 1},        // end past INT_MAX
      {wire::kMagic, 3, 4, 8, kInt8, 2u, 2u, 1},                 // no heads
      {wire::kMagic, 3, 4, 8, kInt8, 0u, 4u, wire::kMaxBlocksPerRequest + 1},
      {0x31564B54u, 3, 4, 8, kInt8, 0u, 4u, 1},                  // version 1's magic
  };
  for (const wire::RequestHeader& header : bad) {
    auto conn = wire::Conn::Connect(a.peer().address, std::chrono::seconds(5), nullptr);
    ASSERT_TRUE(conn.ok()) << conn.status();
    ASSERT_TRUE((*conn)->WriteAll(&header, sizeof(header)));
    uint32_t status = wire::kOk;
    ASSERT_TRUE((*conn)->ReadAll(&status, sizeof(status)));
    EXPECT_EQ(status, wire::kBadRequest) << header.head_begin << ".." << header.head_end;
  }
  BlockFetcher fetcher;
  Destination d(1, 4);
  const BlockPeer peers[] = {a.peer()};
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(1), kFull, {0, 4}, d.pointers).ok());
  EXPECT_EQ(d.blocks[0], FullBlock(0));
}

// Connections are kept between fetches; one the peer closed meanwhile (a restart) is
// replaced by a new one, invisibly.
TEST(BlockTransferTest, AStalePooledConnectionIsReplaced) {
  BlockFetcher fetcher;
  Served a = Serve({0, 4}, 2);
  const BlockPeer peers[] = {a.peer()};
  Destination d(2, 4);
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(2), kFull, {0, 4}, d.pointers).ok());
  const int port = a.server->port();
  a.server.reset();
  auto restarted = BlockServer::Start("127.0.0.1", port, a.source.get());
  ASSERT_TRUE(restarted.ok()) << restarted.status();
  Destination again(2, 4);
  ASSERT_TRUE(fetcher.Fetch(peers, Hashes(2), kFull, {0, 4}, again.pointers).ok());
  EXPECT_EQ(again.blocks[1], FullBlock(1));
}

TEST(BlockTransferTest, AGonePeerIsUnavailable) {
  BlockFetcher fetcher;
  int port;
  {
    Served a = Serve({0, 4}, 1);
    port = a.server->port();
  }
  Destination d(1, 4);
  const BlockPeer peers[] = {{"127.0.0.1:" + std::to_string(port), {0, 4}}};
  EXPECT_EQ(fetcher.Fetch(peers, Hashes(1), kFull, {0, 4}, d.pointers).code(), absl::StatusCode::kUnavailable);
}

// The data plane's mutual TLS: `cert` (node or rogue, from tests/tls/make_certs.sh)
// presented, `ca` trusted.
std::shared_ptr<const tls::SocketTls> DataPlaneTls(const std::string& cert, const std::string& ca,
                                                   const std::string& name = "") {
  const std::string& dir = testing::TestCertificates();
  tls::Files files{dir + "/" + cert + ".pem", dir + "/" + cert + ".key", dir + "/" + ca + ".pem", name};
  auto material = tls::Load(files, tls::Role::kMutual, "internal");
  EXPECT_TRUE(material.ok()) << material.status();
  auto made = tls::SocketTls::Create(**material);
  EXPECT_TRUE(made.ok()) << made.status();
  return *made;
}

// Peers holding certificates of the same CA fetch over TLS, bit-exact, on pooled
// connections (the second fetch makes no new handshake the server could refuse).
TEST(BlockTransferTest, MutualTlsFetchesBitExact) {
  BlockFetcher fetcher(DataPlaneTls("node", "ca"));
  Served a = Serve({0, 2}, 6, DataPlaneTls("node", "ca")), b = Serve({2, 4}, 6, DataPlaneTls("node", "ca"));
  const BlockPeer peers[] = {a.peer(), b.peer()};
  for (int round = 0; round < 2; ++round) {
    Destination d(6, 4);
    ASSERT_TRUE(fetcher.Fetch(peers, Hashes(6), kFull, {0, 4}, d.pointers, {.streams = 2}).ok());
    for (int i = 0; i < 6; ++i) EXPECT_EQ(d.blocks[i], FullBlock(i)) << i;
  }
  EXPECT_EQ(a.server->peers_refused(), 0);
}

// A peer whose certificate another CA signed, or that speaks no TLS, gets nothing; a
// server with such a certificate is not trusted by the fetcher either.
TEST(BlockTransferTest, PeersOutsideTheCaAreRefusedBothWays) {
  Served a = Serve({0, 4}, 2, DataPlaneTls("node", "ca"));
  const BlockPeer peers[] = {a.peer()};
  Destination d(2, 4);
  BlockFetcher rogue(DataPlaneTls("rogue", "ca"));
  const FetchOptions one_stream{.streams = 1};
  EXPECT_EQ(rogue.Fetch(peers, Hashes(2), kFull, {0, 4}, d.pointers, one_stream).code(),
            absl::StatusCode::kUnavailable);
  BlockFetcher plain;
  EXPECT_FALSE(plain.Fetch(peers, Hashes(2), kFull, {0, 4}, d.pointers, one_stream).ok());
  EXPECT_EQ(a.server->blocks_served(), 0);
  for (int waited = 0; waited < 100 && a.server->peers_refused() < 2; ++waited) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(a.server->peers_refused(), 2);
  EXPECT_EQ(d.blocks[0], std::vector<std::byte>(kFull.block_bytes(), kUnwritten));  // nothing written

  Served impostor = Serve({0, 4}, 2, DataPlaneTls("rogue", "rogue-ca"));
  const BlockPeer impostors[] = {impostor.peer()};
  BlockFetcher node(DataPlaneTls("node", "ca"));
  const absl::Status refused = node.Fetch(impostors, Hashes(2), kFull, {0, 4}, d.pointers);
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("TLS"), std::string::npos) << refused;
}

// The dialing side checks the peer's name: the dialed host, or --internal-tls-name.
TEST(BlockTransferTest, TlsChecksThePeersName) {
  Served a = Serve({0, 4}, 1, DataPlaneTls("node", "ca"));
  const BlockPeer peers[] = {a.peer()};
  Destination d(1, 4);
  BlockFetcher named(DataPlaneTls("node", "ca", "tessera-internal"));
  EXPECT_TRUE(named.Fetch(peers, Hashes(1), kFull, {0, 4}, d.pointers).ok());
  BlockFetcher misnamed(DataPlaneTls("node", "ca", "some-other-name"));
  EXPECT_EQ(misnamed.Fetch(peers, Hashes(1), kFull, {0, 4}, d.pointers).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tessera::kvstore
