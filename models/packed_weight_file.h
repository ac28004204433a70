// One file of the packed-weight cache (models/weight_cache.h): a shard's weights as a
// backend packed them, in the order the loader packs them, so a later start reads
// them into place instead of reading the checkpoint and packing it again.
//
// Layout (little-endian, docs/weight-cache.md):
//   header: "TSRPACK\0", u32 format version, u32 key length, u64 record count,
//           u64 file size, the key's bytes
//   each record: u8 use, u8 dtype, 6 zero bytes, i64 rows, i64 cols, u64 bytes,
//                u64 XXH3-64 of the payload, then the payload's bytes
// The key says what the file holds (model identity, shard, backend layout, versions);
// a reader refuses a file whose key, size, record shapes or checksums are not what
// it expects (DATA_LOSS), so a stale, truncated or corrupt file is never used.
//
// Writers write a temporary file next to the final name, under an exclusive flock,
// and rename it into place when complete: readers see a whole file or none, and two
// processes filling the same cache never write one file twice at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "kernels/backend.h"

namespace tessera::models {

class PackedWeightReader {
 public:
  // NOT_FOUND when there is no file at `path`; DATA_LOSS when its header is not a
  // complete file of this format for `key`.
  static absl::StatusOr<std::unique_ptr<PackedWeightReader>> Open(const std::string& path, const std::string& key);
  ~PackedWeightReader();

  // The next weight, restored on `backend`; DATA_LOSS when the file's next record is
  // not a [rows, cols] `dtype` weight of `use`, or its bytes do not match their checksum.
  absl::StatusOr<std::unique_ptr<kernels::Weight>> Next(kernels::Backend& backend, kernels::WeightUse use, int64_t rows,
                                                        int64_t cols, DType dtype);
  // DATA_LOSS unless every record was read.
  absl::Status CheckFinished() const;
  uint64_t size() const { return size_; }  // the file's bytes

 private:
  PackedWeightReader(int fd, std::string path, uint64_t records, uint64_t offset, uint64_t size);

  int fd_;
  std::string path_;
  uint64_t records_left_;
  uint64_t offset_;  // of the next record
  uint64_t size_;
};

class PackedWeightWriter {
 public:
  // A writer that fills `path` (its folder must exist). ALREADY_EXISTS when another
  // process is writing it now; other errors when the folder is not writable.
  static absl::StatusOr<std::unique_ptr<PackedWeightWriter>> Create(const std::string& path, const std::string& key);
  ~PackedWeightWriter();  // removes the temporary file unless Commit succeeded

  // Adds `weight` (packed by `backend` for `use`; it must live until Commit) as the
  // next record. Nothing is written yet: writing while the loader packs makes both
  // slower (the page cache and the weights' fresh pages compete for memory).
  void Append(const kernels::Backend& backend, const kernels::Weight& weight, kernels::WeightUse use, DType dtype);
  // Writes the records and the header and renames the file into place.
  absl::Status Commit();
  uint64_t bytes() const { return offset_; }

 private:
  PackedWeightWriter(int fd, std::string path, std::string temp_path, size_t key_bytes);
  absl::Status Write(const void* data, size_t bytes);

  struct Pending {
    const kernels::Backend* backend;
    const kernels::Weight* weight;
    kernels::WeightUse use;
    DType dtype;
  };
  std::vector<Pending> pending_;
  int fd_;
  std::string path_, temp_path_;
  uint32_t key_bytes_;
  uint64_t offset_ = 0;  // where the next write goes
  bool committed_ = false;
};

}  // namespace tessera::models
