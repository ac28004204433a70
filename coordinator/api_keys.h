// ApiKeys: who may use the client APIs (--api-key-file). Each key belongs to a tenant;
// a tenant's requests get the tenant as their cache salt, so one tenant never hits (or
// times) another's prefix cache, and only the tenant that started a request may abort
// it. Keys come as "Authorization: Bearer KEY" over HTTP and as `authorization`
// metadata with the same value over gRPC; they are compared in constant time (SHA-256
// digests, CRYPTO_memcmp), so a wrong key's timing says nothing about the right ones.
//
// The file: one key per line, "KEY", "KEY TENANT" or "KEY TENANT WEIGHT" (default
// tenant: "key-<line>"; weight: the tenant's share of a busy group against other
// tenants', default 1, the largest given for the tenant wins); blank lines and lines
// starting with # are skipped.
#pragma once

#include <array>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tessera::coordinator {

class ApiKeys {
 public:
  // No keys: every request is let in, as the tenant "".
  ApiKeys() = default;
  static absl::StatusOr<ApiKeys> Load(const std::string& path);

  bool enabled() const { return !keys_.empty(); }
  // The tenant of `authorization` ("Bearer KEY"); UNAUTHENTICATED when keys are on and
  // it names none of them. "" when keys are off.
  absl::StatusOr<std::string> Authenticate(std::string_view authorization) const;
  // The tenant's fair-share weight (1 for unknown tenants and without keys).
  double WeightOf(const std::string& tenant) const;

 private:
  using Digest = std::array<unsigned char, 32>;
  struct Key {
    Digest digest;
    std::string tenant;
  };
  std::vector<Key> keys_;
  std::map<std::string, double> weights_;  // tenants given a weight
};

}  // namespace tessera::coordinator
