#include "models/weight_cache.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/status.h"
#include "kvstore/block_hash.h"
#include "models/packed_weight_file.h"

namespace tessera::models {
namespace {

namespace fs = std::filesystem;

// Each checkpoint file's name, size and modification time: the identity samples the
// values, so a file rewritten in place with the same shapes is told apart by these.
std::string CheckpointFiles(const std::string& model_dir) {
  std::vector<std::string> lines;
  std::error_code error;
  for (const fs::directory_entry& entry : fs::directory_iterator(model_dir, error)) {
    if (entry.path().extension() != ".safetensors") continue;
    struct stat st;
    if (stat(entry.path().c_str(), &st) != 0) continue;
    lines.push_back(absl::StrCat("file ", entry.path().filename().string(), " ", st.st_size, " ", st.st_mtim.tv_sec,
                                 ".", absl::StrFormat("%09d", st.st_mtim.tv_nsec), "\n"));
  }
  std::sort(lines.begin(), lines.end());
  return absl::StrJoin(lines, "");
}

std::string GB(uint64_t bytes) { return absl::StrFormat("%.2f GB", static_cast<double>(bytes) / 1e9); }

}  // namespace

std::string WeightCacheUse::Describe() const {
  switch (outcome) {
    case Outcome::kOff: return "weight cache off";
    case Outcome::kHit: return absl::StrCat("weights read from the cache ", path, " (", GB(bytes), ")");
    case Outcome::kWriting:
      return absl::StrCat("weights packed from the checkpoint; writing them to the cache ", path,
                          detail.empty() ? "" : absl::StrCat(" (the old file was not used: ", detail, ")"));
    case Outcome::kWritten: return absl::StrCat("weights cached in ", path, " (", GB(bytes), ")");
    case Outcome::kNotWritten: return absl::StrCat("weights not cached: ", detail);
  }
  return "";
}

const char* WeightCacheUse::OutcomeName() const {
  switch (outcome) {
    case Outcome::kOff: return "off";
    case Outcome::kHit: return "hit";
    case Outcome::kWriting: return "writing";
    case Outcome::kWritten: return "written";
    case Outcome::kNotWritten: return "not_written";
  }
  return "";
}

std::string WeightCacheKey(const std::string& model_dir, const std::string& model_identity, const ShardLayout& shard,
                           const std::string& packed_layout) {
  return absl::StrCat("tessera packed weights\n", "tessera ", Version(), "\n", "model ", model_identity, "\n",
                      CheckpointFiles(model_dir), "shard tp ", shard.tp.rank, "/", shard.tp.size, " ep ",
                      shard.ep.rank, "/", shard.ep.size, "\n", "layout ", packed_layout, "\n", "weight order ",
                      kPackedWeightOrderVersion, "\n");
}

std::string WeightCacheFile(const std::string& dir, const std::string& key) {
  kvstore::FieldDigest digest;
  digest.Field(key);
  return (fs::path(dir) / absl::StrCat(kvstore::ToHex(digest.Finish()).substr(0, 32), ".weights")).string();
}

WeightCacheWrite::WeightCacheWrite(std::unique_ptr<PackedWeightWriter> writer, WeightCacheUse use,
                                   std::function<void(const WeightCacheUse&)> on_written)
    : thread_([writer = std::move(writer), use = std::move(use), on_written = std::move(on_written)]() mutable {
        if (absl::Status written = writer->Commit(); written.ok()) {
          use.outcome = WeightCacheUse::Outcome::kWritten;
          use.bytes = writer->bytes();
        } else {
          use.outcome = WeightCacheUse::Outcome::kNotWritten;
          use.detail = std::string(written.message());
          log::Warning() << "weight cache: not written: " << written.message();
        }
        writer = nullptr;  // closes the file before telling
        if (on_written) on_written(use);
      }) {}

WeightCacheWrite::~WeightCacheWrite() { thread_.join(); }

absl::StatusOr<ModelWeights> LoadWeightsCached(const WeightCacheRequest& cache, const ModelSpec& spec,
                                               const TensorSource& source, const ShardLayout& shard,
                                               kernels::Backend& backend,
                                               const std::function<void(int64_t done, int64_t total)>& on_progress,
                                               WeightCacheUse* use) {
  *use = {};
  const std::string layout = backend.PackedLayout();
  if (layout.empty()) {
    use->detail = "this device's weights are not cached";
    return LoadWeights(spec, source, shard, backend, on_progress);
  }
  const std::string& dir = cache.dir;
  const std::string key = WeightCacheKey(cache.model_dir, cache.model_identity, shard, layout);
  use->path = WeightCacheFile(dir, key);

  absl::StatusOr<std::unique_ptr<PackedWeightReader>> reader = PackedWeightReader::Open(use->path, key);
  absl::Status unusable = reader.status();
  if (reader.ok()) {
    absl::StatusOr<ModelWeights> weights = LoadWeights(spec, source, shard, backend, on_progress, {reader->get()});
    if (weights.ok()) unusable = (*reader)->CheckFinished();
    if (weights.ok() && unusable.ok()) {
      use->outcome = WeightCacheUse::Outcome::kHit;
      use->bytes = (*reader)->size();
      return weights;
    }
    // A checkpoint that cannot load is the load's error; anything else is the file's.
    if (!weights.ok() && weights.status().code() != absl::StatusCode::kDataLoss) return weights.status();
    if (!weights.ok()) unusable = weights.status();
  }
  if (!absl::IsNotFound(unusable)) {
    log::Warning() << "weight cache: not using " << use->path << ": " << unusable.message()
                   << "; loading from the checkpoint and writing it again";
    use->detail = std::string(unusable.message());
  }
  reader = nullptr;

  std::error_code made;
  fs::create_directories(dir, made);
  absl::StatusOr<std::unique_ptr<PackedWeightWriter>> writer =
      made ? absl::Status(absl::InternalError(absl::StrCat("creating ", dir, ": ", made.message())))
           : PackedWeightWriter::Create(use->path, key);
  PackedWeightIo io;
  if (writer.ok()) io.to = writer->get();
  ASSIGN_OR_RETURN(ModelWeights weights, LoadWeights(spec, source, shard, backend, on_progress, io));
  if (writer.ok()) {
    use->outcome = WeightCacheUse::Outcome::kWriting;
    weights.cache_write = std::make_unique<WeightCacheWrite>(*std::move(writer), *use, cache.on_written);
  } else {
    use->outcome = WeightCacheUse::Outcome::kNotWritten;
    use->detail = std::string(writer.status().message());
    if (!absl::IsAlreadyExists(writer.status())) log::Warning() << "weight cache: not written: " << use->detail;
  }
  return weights;
}

}  // namespace tessera::models
