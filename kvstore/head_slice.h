// A slice of a KV block's heads: what the data plane moves between groups of different
// tensor-parallel degrees (a group takes exactly the KV heads it holds).
#pragma once

#include <cstdint>

#include "kvstore/kv_layout.h"

namespace tessera::kvstore {

// KV heads [begin, end), numbered as in the whole model.
struct HeadRange {
  int begin = 0, end = 0;
  int size() const { return end - begin; }
  bool Contains(HeadRange r) const { return begin <= r.begin && r.end <= end; }
};

// Elements of a slice of `heads` of one block: [layer][K|V][head][token][head_dim].
int64_t SliceElems(const KvLayout& layout, int heads);
// Copies heads [first, first + count) (local numbering) of a block out into a slice,
// and back in.
void CopySliceOut(const KvLayout& layout, const float* block, int first, int count, float* slice);
void CopySliceIn(const KvLayout& layout, const float* slice, int first, int count, float* block);

}  // namespace tessera::kvstore
