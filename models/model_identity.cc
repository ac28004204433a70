#include "models/model_identity.h"

#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "models/safetensors.h"

namespace tessera::models {
namespace {

constexpr uint64_t kSampleBytes = 4096;

class Sha256 {
 public:
  Sha256() : ctx_(EVP_MD_CTX_new(), &EVP_MD_CTX_free) { EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr); }
  // Length-prefixed, so that fields cannot run into each other.
  void Field(const void* data, uint64_t size) {
    EVP_DigestUpdate(ctx_.get(), &size, sizeof size);
    EVP_DigestUpdate(ctx_.get(), data, size);
  }
  void Field(const std::string& s) { Field(s.data(), s.size()); }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &n);
    std::string hex;
    for (unsigned int i = 0; i < n; ++i) absl::StrAppend(&hex, absl::Hex(digest[i], absl::kZeroPad2));
    return hex;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx_;
};

}  // namespace

absl::StatusOr<std::string> ModelIdentity(const std::string& model_dir) {
  Sha256 sha;
  const std::string config_path = (std::filesystem::path(model_dir) / "config.json").string();
  std::ifstream config(config_path, std::ios::binary);
  if (!config) return absl::NotFoundError(absl::StrCat("cannot read ", config_path));
  std::stringstream bytes;
  bytes << config.rdbuf();
  sha.Field(bytes.str());

  ASSIGN_OR_RETURN(std::unique_ptr<Checkpoint> checkpoint, Checkpoint::Open(model_dir));
  std::string sample;
  for (const auto& [name, view] : checkpoint->tensors()) {
    sha.Field(name);
    sha.Field(absl::StrCat(view->dtype, "[", absl::StrJoin(view->shape, ","), "] ", view->nbytes));
    const uint64_t n = std::min<uint64_t>(kSampleBytes, view->nbytes);
    for (const uint64_t offset : {uint64_t{0}, (view->nbytes - n) / 2, view->nbytes - n}) {
      sample.resize(n);
      RETURN_IF_ERROR(ReadBytes(*view, offset, n, sample.data()));
      sha.Field(sample);
    }
  }
  return absl::StrCat("sha256:", sha.Hex());
}

}  // namespace tessera::models
