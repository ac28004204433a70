#include "kvstore/block_hash.h"

#include <openssl/evp.h>

#include <memory>

namespace tessera::kvstore {
namespace {

constexpr std::string_view kDomain = "tessera-kv-block";

FieldDigest Begin(std::string_view kind) {
  FieldDigest d;
  d.Field(kDomain);
  const uint8_t version = kBlockHashVersion;
  d.Field(&version, 1);
  d.Field(kind);
  return d;
}

}  // namespace

FieldDigest::FieldDigest() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) {
  EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr);
}

FieldDigest::~FieldDigest() = default;

void FieldDigest::Field(const void* data, uint64_t size) {
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(size >> (8 * i));  // little-endian
  EVP_DigestUpdate(ctx_.get(), len, sizeof(len));
  EVP_DigestUpdate(ctx_.get(), data, size);
}

BlockHash FieldDigest::Finish() {
  BlockHash h;
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx_.get(), h.data(), &n);
  return h;
}

BlockHash RootHash(std::string_view model_identity, std::string_view kv_dtype, std::string_view tenant_salt) {
  FieldDigest d = Begin("root");
  d.Field(model_identity);
  d.Field(kv_dtype);
  d.Field(tenant_salt);
  return d.Finish();
}

BlockHash ChainHash(const BlockHash& parent, std::span<const int32_t> tokens) {
  FieldDigest d = Begin("block");
  d.Field(parent.data(), parent.size());
  std::string bytes(tokens.size() * 4, '\0');
  for (size_t i = 0; i < tokens.size(); ++i) {
    const uint32_t t = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < 4; ++b) bytes[4 * i + b] = static_cast<char>(t >> (8 * b));  // int32 little-endian
  }
  d.Field(bytes);
  return d.Finish();
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
