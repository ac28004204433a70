#include "common/kv_dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "common/bf16.h"

namespace tessera {
namespace {

// The scales after a record's values (std::byte or const std::byte).
template <typename Byte>
auto* Scales(KvDtype dtype, Byte* record, int head_dim, int block_size) {
  using Float = std::conditional_t<std::is_const_v<Byte>, const float, float>;
  return reinterpret_cast<Float*>(record + KvValuesBytes(dtype, block_size, head_dim));
}

float MaxAbs(const float* x, int n) {
  float m = 0.0f;
  for (int i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

const char* KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kF32: return "f32";
    case KvDtype::kBf16: return "bf16";
    case KvDtype::kF16: return "f16";
    case KvDtype::kInt8: return "int8";
    case KvDtype::kFp8E4m3: return "fp8_e4m3";
  }
  return "?";
}

bool ParseKvDtype(std::string_view name, KvDtype* dtype) {
  for (KvDtype d : {KvDtype::kF32, KvDtype::kBf16, KvDtype::kF16, KvDtype::kInt8, KvDtype::kFp8E4m3}) {
    if (name == KvDtypeName(d)) {
      *dtype = d;
      return true;
    }
  }
  return false;
}

void EncodeKvToken(KvDtype dtype, const float* x, int head_dim, int block_size, int slot, std::byte* record) {
  const int64_t first = static_cast<int64_t>(slot) * head_dim;
  switch (dtype) {
    case KvDtype::kF32:
      std::memcpy(reinterpret_cast<float*>(record) + first, x, sizeof(float) * head_dim);
      return;
    case KvDtype::kBf16:
      for (int i = 0; i < head_dim; ++i) reinterpret_cast<uint16_t*>(record)[first + i] = FloatToBf16(x[i]);
      return;
    case KvDtype::kF16:
      for (int i = 0; i < head_dim; ++i) reinterpret_cast<uint16_t*>(record)[first + i] = FloatToF16(x[i]);
      return;
    case KvDtype::kInt8: {
      const float amax = MaxAbs(x, head_dim);
      const float inv = amax > 0.0f ? kInt8Max / amax : 0.0f;
      auto* q = reinterpret_cast<int8_t*>(record) + first;
      for (int i = 0; i < head_dim; ++i) q[i] = Int8Encode(x[i], inv);
      Scales(dtype, record, head_dim, block_size)[slot] = amax / kInt8Max;
      return;
    }
    case KvDtype::kFp8E4m3: {
      float& scale = Scales(dtype, record, head_dim, block_size)[0];
      auto* q = reinterpret_cast<uint8_t*>(record);
      const float amax = MaxAbs(x, head_dim);
      if (slot == 0) {
        scale = Fp8ScaleFor(amax);
      } else if (amax > scale * kE4m3Max) {  // re-encode the tokens before at the new scale
        const float raised = Fp8ScaleFor(amax), ratio = scale / raised;
        for (int64_t i = 0; i < first; ++i) q[i] = FloatToE4m3(E4m3ToFloat(q[i]) * ratio);
        scale = raised;
      }
      const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
      for (int i = 0; i < head_dim; ++i) q[first + i] = FloatToE4m3(x[i] * inv);
      return;
    }
  }
}

void DecodeKvToken(KvDtype dtype, const std::byte* record, int head_dim, int block_size, int slot, float* out) {
  const int64_t first = static_cast<int64_t>(slot) * head_dim;
  const float* scales = Scales(dtype, record, head_dim, block_size);
  for (int i = 0; i < head_dim; ++i) {
    switch (dtype) {
      case KvDtype::kF32: out[i] = reinterpret_cast<const float*>(record)[first + i]; break;
      case KvDtype::kBf16: out[i] = Bf16ToFloat(reinterpret_cast<const uint16_t*>(record)[first + i]); break;
      case KvDtype::kF16: out[i] = F16ToFloat(reinterpret_cast<const uint16_t*>(record)[first + i]); break;
      case KvDtype::kInt8: out[i] = reinterpret_cast<const int8_t*>(record)[first + i] * scales[slot]; break;
      case KvDtype::kFp8E4m3: out[i] = E4m3ToFloat(reinterpret_cast<const uint8_t*>(record)[first + i]) * scales[0]; break;
    }
  }
}

}  // namespace tessera
