// Block identity for prefix caching (scheme v1, docs/kv-blocks.md): a full block's id
// is SHA-256 chained over (parent id, the block's token ids), starting from a root
// that mixes in the model identity, the KV dtype and an optional tenant salt, never
// the tensor-parallel layout. Every field is length-prefixed.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace tessera::kvstore {

using BlockHash = std::array<uint8_t, 32>;

inline constexpr int kBlockHashVersion = 1;

BlockHash RootHash(std::string_view model_identity, std::string_view kv_dtype, std::string_view tenant_salt);
BlockHash ChainHash(const BlockHash& parent, std::span<const int32_t> tokens);
std::string ToHex(const BlockHash& h);

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const {
    size_t v;
    static_assert(sizeof(v) <= sizeof(BlockHash));
    __builtin_memcpy(&v, h.data(), sizeof(v));
    return v;
  }
};

}  // namespace tessera::kvstore
