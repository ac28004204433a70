#include "kvstore/head_slice.h"

#include <cstring>

namespace tessera::kvstore {

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

}  // namespace tessera::kvstore
