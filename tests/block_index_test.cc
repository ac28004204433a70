// The coordinator's cluster-wide block index: numbered events applied in order, a
// snapshot asked for after a gap or by a coordinator that knows nothing, lost workers
// dropped, and fetch plans that need every KV head covered.
#include <gtest/gtest.h>

#include "kvstore/block_index.h"

namespace tessera::coordinator {
namespace {

kvstore::BlockHash H(int i) {
  kvstore::BlockHash h{};
  h[0] = static_cast<uint8_t>(i);
  return h;
}

v1::internal::KvEvents Events(uint64_t last_seq, std::vector<std::pair<bool, int>> events, bool snapshot = false,
                              int head_begin = 0, int head_end = 2) {
  v1::internal::KvEvents e;
  e.set_kv_address("peer:1");
  e.set_head_begin(head_begin);
  e.set_head_end(head_end);
  e.set_num_kv_heads(2);
  e.set_last_seq(last_seq);
  e.set_snapshot(snapshot);
  for (const auto& [stored, i] : events) {
    auto* ev = e.add_events();
    ev->set_stored(stored);
    const kvstore::BlockHash h = H(i);
    ev->set_hash(h.data(), h.size());
  }
  return e;
}

TEST(BlockIndexTest, AnUnknownWorkerIsAskedForASnapshotThenFollowedByEvents) {
  kvstore::BlockIndex index;
  EXPECT_TRUE(index.Apply("w1", Events(2, {{true, 1}, {true, 2}})).resync);
  EXPECT_EQ(index.num_blocks(), 0);
  const kvstore::BlockIndex::Ack ack = index.Apply("w1", Events(2, {{true, 1}, {true, 2}}, /*snapshot=*/true));
  EXPECT_FALSE(ack.resync);
  EXPECT_EQ(ack.acked_seq, 2u);
  EXPECT_EQ(index.num_blocks(), 2);
  // Events 3..4, with event 2 sent again (its ack was lost): applied once.
  EXPECT_EQ(index.Apply("w1", Events(4, {{true, 2}, {false, 1}, {true, 3}})).acked_seq, 4u);
  const kvstore::BlockHash chain[] = {H(2), H(3)};
  EXPECT_EQ(index.LongestPrefix(chain).blocks, 2);
  EXPECT_EQ(index.num_blocks(), 2);
  EXPECT_EQ(index.resyncs(), 1);
}

TEST(BlockIndexTest, AGapAsksForASnapshot) {
  kvstore::BlockIndex index;
  index.Apply("w1", Events(1, {{true, 1}}, true));
  EXPECT_TRUE(index.Apply("w1", Events(5, {{true, 5}})).resync);  // events 2..4 are missing
  EXPECT_EQ(index.num_blocks(), 1);
}

TEST(BlockIndexTest, PlansNeedEveryHeadAndALostWorkerTakesItsBlocks) {
  kvstore::BlockIndex index;
  // Two TP=2 ranks hold blocks 1 and 2; only rank 0 holds block 3.
  index.Apply("r0", Events(3, {{true, 1}, {true, 2}, {true, 3}}, true, 0, 1));
  index.Apply("r1", Events(2, {{true, 1}, {true, 2}}, true, 1, 2));
  const kvstore::BlockHash chain[] = {H(1), H(2), H(3)};
  kvstore::BlockIndex::Found found = index.LongestPrefix(chain);
  EXPECT_EQ(found.blocks, 2);
  EXPECT_EQ(found.peers.size(), 2u);
  index.RemoveWorker("r1");
  EXPECT_EQ(index.LongestPrefix(chain).blocks, 0);
  EXPECT_EQ(index.num_blocks(), 3);  // still held by r0, but no longer fetchable whole
  index.RemoveWorker("r0");
  EXPECT_EQ(index.num_blocks(), 0);
  EXPECT_EQ(index.num_workers(), 0);
}

}  // namespace
}  // namespace tessera::coordinator
