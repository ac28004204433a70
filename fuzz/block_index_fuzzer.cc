// The coordinator's block index (kvstore::BlockIndex) fed arbitrary heartbeats: the
// input is a run of (worker byte, 16-bit length, KvEvents bytes) records, applied in
// order, with lookups between them; a worker byte with its top bit set removes the
// worker. Never a crash; the counts stay consistent.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "kvstore/block_index.h"
#include "tessera/v1/internal/worker.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera;
  kvstore::BlockIndex index;
  fuzz::FuzzInput in(data, size);
  std::vector<kvstore::BlockHash> seen;
  while (!in.empty()) {
    const uint8_t worker = in.Byte();
    const std::string worker_id = "worker-" + std::to_string(worker & 7);
    if (worker & 0x80) {
      index.RemoveWorker(worker_id);
      continue;
    }
    v1::internal::KvEvents events;
    if (!events.ParseFromString(std::string(in.Field()))) continue;
    (void)index.Apply(worker_id, events);
    for (const auto& e : events.events()) {
      kvstore::BlockHash hash{};
      std::copy_n(e.hash().begin(), std::min(e.hash().size(), hash.size()), hash.begin());
      seen.push_back(hash);
    }
    const kvstore::BlockIndex::Found found = index.LongestPrefix(seen);
    if (found.blocks < 0 || found.blocks > static_cast<int64_t>(seen.size())) __builtin_trap();
    if (index.num_entries() < index.num_blocks() || index.num_workers() > 8) __builtin_trap();
  }
  return 0;
}
