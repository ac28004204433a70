#include "coordinator/api_keys.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tessera::coordinator {
namespace {

std::array<unsigned char, 32> Sha256(std::string_view text) {
  std::array<unsigned char, 32> digest;
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest.data());
  return digest;
}

}  // namespace

absl::StatusOr<ApiKeys> ApiKeys::Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read the API key file ", path));
  ApiKeys keys;
  int line_number = 0;
  for (std::string line; std::getline(in, line);) {
    ++line_number;
    std::istringstream fields(line);
    std::string key, tenant, weight_text, extra;
    if (!(fields >> key) || key[0] == '#') continue;
    fields >> tenant >> weight_text;
    double weight = 1;
    if (fields >> extra) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ":", line_number, ": expected \"KEY [TENANT [WEIGHT]]\", found more"));
    }
    if (!weight_text.empty() && (!absl::SimpleAtod(weight_text, &weight) || !(weight > 0) || weight > 1e6)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ":", line_number, ": the weight must be a number in (0, 1e6], not ", weight_text));
    }
    if (tenant.empty()) tenant = absl::StrCat("key-", line_number);
    if (!weight_text.empty()) keys.weights_[tenant] = std::max(keys.weights_[tenant], weight);
    keys.keys_.push_back({Sha256(key), tenant});
  }
  if (keys.keys_.empty()) return absl::FailedPreconditionError(absl::StrCat("the API key file ", path, " has no key"));
  return keys;
}

absl::StatusOr<std::string> ApiKeys::Authenticate(std::string_view authorization) const {
  if (keys_.empty()) return std::string();
  constexpr std::string_view kBearer = "Bearer ";
  if (authorization.substr(0, kBearer.size()) != kBearer) {
    return absl::UnauthenticatedError("an API key is required: Authorization: Bearer KEY");
  }
  const Digest given = Sha256(authorization.substr(kBearer.size()));
  const std::string* tenant = nullptr;
  for (const Key& key : keys_) {  // every key is compared: the time does not depend on which matched
    if (CRYPTO_memcmp(given.data(), key.digest.data(), given.size()) == 0) tenant = &key.tenant;
  }
  if (tenant == nullptr) return absl::UnauthenticatedError("the API key is not valid");
  return *tenant;
}

double ApiKeys::WeightOf(const std::string& tenant) const {
  const auto it = weights_.find(tenant);
  return it == weights_.end() ? 1.0 : it->second;
}

}  // namespace tessera::coordinator
