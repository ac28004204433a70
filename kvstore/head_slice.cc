#include "kvstore/head_slice.h"

#include <cstring>

namespace tessera::kvstore {

int64_t SliceBytes(const KvLayout& layout, int heads) {
  return static_cast<int64_t>(layout.num_layers) * 2 * heads * layout.head_bytes();
}

void CopySliceOut(const KvLayout& layout, const std::byte* block, int first, int count, std::byte* slice) {
  const int64_t run = count * layout.head_bytes();  // one layer's K or V of these heads
  for (int64_t part = 0; part < 2 * layout.num_layers; ++part) {
    std::memcpy(slice + part * run, block + part * layout.kv_bytes() + first * layout.head_bytes(), run);
  }
}

void CopySliceIn(const KvLayout& layout, const std::byte* slice, int first, int count, std::byte* block) {
  const int64_t run = count * layout.head_bytes();
  for (int64_t part = 0; part < 2 * layout.num_layers; ++part) {
    std::memcpy(block + part * layout.kv_bytes() + first * layout.head_bytes(), slice + part * run, run);
  }
}

}  // namespace tessera::kvstore
