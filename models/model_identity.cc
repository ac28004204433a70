#include "models/model_identity.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "kvstore/block_hash.h"
#include "models/safetensors.h"

namespace tessera::models {
namespace {

constexpr uint64_t kSampleBytes = 4096;

}  // namespace

absl::StatusOr<std::string> ModelIdentity(const std::string& model_dir) {
  kvstore::FieldDigest sha;
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
  return absl::StrCat("sha256:", kvstore::ToHex(sha.Finish()));
}

}  // namespace tessera::models
