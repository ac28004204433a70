// The element types of the KV cache and the byte layout of one head record: the
// `block_size` tokens of one (layer, K or V, kv head) of a block (kvstore/kv_layout.h),
//   [token][head_dim] values of the dtype, then the dequantization scales:
//   int8:     one float32 per token          (x = q · scale[token])
//   fp8_e4m3: one float32 for the record     (x = e4m3(q) · scale), a power of two,
//             set when the record's first token is written and raised when a later
//             token would not fit (re-encoding the tokens before: exact, as a power
//             of two moves them by whole binades, but for those that fall below
//             the normal range)
// f32, bf16 and f16 carry no scale. The scales sit next to their values, so a head
// slice of a block (the data plane's unit) carries its own.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/kv_encoding.h"  // E4m3ToFloat, FloatToE4m3, kE4m3Max

namespace tessera {

enum class KvDtype : uint8_t { kF32 = 0, kBf16 = 1, kF16 = 2, kInt8 = 3, kFp8E4m3 = 4 };

// "f32", "bf16", "f16", "int8", "fp8_e4m3": the flag values and the hash-root name.
const char* KvDtypeName(KvDtype dtype);
// False for anything else (including "auto", which the caller resolves).
bool ParseKvDtype(std::string_view name, KvDtype* dtype);

constexpr int KvValueBytes(KvDtype dtype) {
  return dtype == KvDtype::kF32 ? 4 : (dtype == KvDtype::kBf16 || dtype == KvDtype::kF16) ? 2 : 1;
}
// Bytes of the values of a record (padded to 4 so the scales are aligned).
constexpr int64_t KvValuesBytes(KvDtype dtype, int block_size, int head_dim) {
  return (static_cast<int64_t>(block_size) * head_dim * KvValueBytes(dtype) + 3) / 4 * 4;
}
constexpr int64_t KvRecordBytes(KvDtype dtype, int block_size, int head_dim) {
  const int scales = dtype == KvDtype::kInt8 ? block_size : dtype == KvDtype::kFp8E4m3 ? 1 : 0;
  return KvValuesBytes(dtype, block_size, head_dim) + 4 * scales;
}


// Writes token `slot` of a record from x[head_dim] (an fp8 record may re-encode its
// earlier tokens, see above), and reads it back. Slots are written in order from 0.
void EncodeKvToken(KvDtype dtype, const float* x, int head_dim, int block_size, int slot, std::byte* record);
void DecodeKvToken(KvDtype dtype, const std::byte* record, int head_dim, int block_size, int slot, float* out);

}  // namespace tessera
