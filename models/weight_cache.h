// The packed-weight cache (`--weight-cache DIR`, docs/weight-cache.md): a shard's
// weights as the backend packs them, written once into DIR and read straight into
// place on later starts instead of reading the checkpoint and packing it again.
//
// One file per (model, shard, backend layout): its key names the model identity
// (models/model_identity.h) and the checkpoint files' sizes and modification times,
// the tensor/expert-parallel rank, the backend's packed layout (on the CPU, the kernel
// ISA level), the loader's weight order and Tessera's version; the file name is a
// digest of the key and the file holds the key itself. A file that is not a complete,
// matching file for that key (another model, shard or layout; truncated; a checksum
// that fails) is never used: the weights load from the checkpoint, and a new file
// replaces it (renamed over it, so a good file another process just wrote is never
// deleted). Files are written after the load on a thread of their
// own, so a cache never delays the model's readiness.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "kernels/backend.h"
#include "models/model_spec.h"
#include "models/safetensors.h"
#include "models/sharding.h"
#include "models/weights.h"

namespace tessera::models {

// What a load did with the cache.
struct WeightCacheUse {
  enum class Outcome {
    kOff,         // no cache asked for, or the backend's weights are not cached (GPUs)
    kHit,         // the weights came from the cache file
    kWriting,     // no usable file: loaded from the checkpoint, the file being written
    kWritten,     // ... and written (told once the writing ends)
    kNotWritten,  // loaded from the checkpoint; the file could not be written (`detail`)
  };
  Outcome outcome = Outcome::kOff;
  std::string path;    // the cache file
  std::string detail;  // why a file was not used or not written; empty otherwise
  uint64_t bytes = 0;  // the file's size

  // One line for a log: "weights read from the cache DIR/FILE (2.20 GB)", ...
  std::string Describe() const;
  // "off", "hit", "writing", "written", "not_written".
  const char* OutcomeName() const;
};

// Where and how a load uses the cache.
struct WeightCacheRequest {
  std::string dir;             // the cache folder (created if missing)
  std::string model_dir;       // the model folder, whose files are part of the key
  std::string model_identity;  // its ModelIdentity
  // Told from the writing thread when a file written after the load is complete
  // (kWritten) or failed (kNotWritten); may be empty.
  std::function<void(const WeightCacheUse&)> on_written;
};

class PackedWeightWriter;

// A cache file being written after a load, on a thread of its own (ModelWeights::
// cache_write, which the weights outlive). The destructor waits for the file to be
// complete.
class WeightCacheWrite {
 public:
  WeightCacheWrite(std::unique_ptr<PackedWeightWriter> writer, WeightCacheUse use,
                   std::function<void(const WeightCacheUse&)> on_written);
  ~WeightCacheWrite();

 private:
  std::thread thread_;
};

// The key and file of a shard's weights in cache folder `dir`.
std::string WeightCacheKey(const std::string& model_dir, const std::string& model_identity, const ShardLayout& shard,
                           const std::string& packed_layout);
std::string WeightCacheFile(const std::string& dir, const std::string& key);

// LoadWeights through the cache `cache` names. Errors are the load's own: a cache that
// cannot be read or written is logged as a warning and the load goes on without. A
// file to be written is written by the weights' `cache_write` (`backend` must outlive
// it).
absl::StatusOr<ModelWeights> LoadWeightsCached(const WeightCacheRequest& cache, const ModelSpec& spec,
                                               const TensorSource& source, const ShardLayout& shard,
                                               kernels::Backend& backend,
                                               const std::function<void(int64_t done, int64_t total)>& on_progress,
                                               WeightCacheUse* use);

}  // namespace tessera::models
