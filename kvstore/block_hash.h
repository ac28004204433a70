// Block identity for prefix caching (scheme v1, docs/kv-blocks.md): a full block's id
// is SHA-256 chained over (parent id, the block's token ids), starting from a root
// that mixes in the model identity, the KV dtype and an optional tenant salt, never
// the tensor-parallel layout. Every field is length-prefixed.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace tessera::kvstore {

using BlockHash = std::array<uint8_t, 32>;

// SHA-256 over length-prefixed fields (each an 8-byte little-endian length, then its
// bytes), so that fields can never run into each other. Block ids are made with it,
// and so is the model identity that roots them (models::ModelIdentity).
class FieldDigest {
 public:
  FieldDigest();
  ~FieldDigest();
  FieldDigest(FieldDigest&&) = default;
  void Field(const void* data, uint64_t size);
  void Field(std::string_view bytes) { Field(bytes.data(), bytes.size()); }
  BlockHash Finish();

 private:
  std::unique_ptr<evp_md_ctx_st, void (*)(evp_md_ctx_st*)> ctx_;
};

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
