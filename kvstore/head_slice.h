// A slice of a KV block's heads: what the data plane moves between groups of different
// tensor-parallel degrees (a group takes exactly the KV heads it holds).
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstore/kv_layout.h"

namespace tessera::kvstore {

// KV heads [begin, end), numbered as in the whole model.
struct HeadRange {
  int begin = 0, end = 0;
  int size() const { return end - begin; }
  bool Contains(HeadRange r) const { return begin <= r.begin && r.end <= end; }
};

// Bytes of a slice of `heads` of one block: [layer][K|V][head][head record].
int64_t SliceBytes(const KvLayout& layout, int heads);
// Copies heads [first, first + count) (local numbering) of a block out into a slice,
// and back in.
void CopySliceOut(const KvLayout& layout, const std::byte* block, int first, int count, std::byte* slice);
void CopySliceIn(const KvLayout& layout, const std::byte* slice, int first, int count, std::byte* block);

}  // namespace tessera::kvstore
