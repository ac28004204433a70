#include "kvstore/block_hash.h"

#include <openssl/evp.h>

#include <memory>

namespace tessera::kvstore {
namespace {

constexpr std::string_view kDomain = "tessera-kv-block";

using Digest = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

void Field(EVP_MD_CTX* ctx, const void* data, uint64_t size) {
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(size >> (8 * i));  // little-endian
  EVP_DigestUpdate(ctx, len, sizeof(len));
  EVP_DigestUpdate(ctx, data, size);
}

Digest Begin(std::string_view kind) {
  Digest d(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  EVP_DigestInit_ex(d.get(), EVP_sha256(), nullptr);
  EVP_MD_CTX* ctx = d.get();
  Field(ctx, kDomain.data(), kDomain.size());
  const uint8_t version = kBlockHashVersion;
  Field(ctx, &version, 1);
  Field(ctx, kind.data(), kind.size());
  return d;
}

BlockHash Finish(Digest d) {
  BlockHash h;
  unsigned int n = 0;
  EVP_DigestFinal_ex(d.get(), h.data(), &n);
  return h;
}

}  // namespace

BlockHash RootHash(std::string_view model_identity, std::string_view kv_dtype, std::string_view tenant_salt) {
  Digest d = Begin("root");
  Field(d.get(), model_identity.data(), model_identity.size());
  Field(d.get(), kv_dtype.data(), kv_dtype.size());
  Field(d.get(), tenant_salt.data(), tenant_salt.size());
  return Finish(std::move(d));
}

BlockHash ChainHash(const BlockHash& parent, std::span<const int32_t> tokens) {
  Digest d = Begin("block");
  Field(d.get(), parent.data(), parent.size());
  std::string bytes(tokens.size() * 4, '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    const uint32_t t = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < 4; ++b) bytes[4 * i + b] = static_cast<char>(t >> (8 * b));  // int32 little-endian
  }
  Field(d.get(), bytes.data(), bytes.size());
  return Finish(std::move(d));
}

std::string ToHex(const BlockHash& h) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  for (uint8_t b : h) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 15]);
  }
  return out;
}

}  // namespace tessera::kvstore
