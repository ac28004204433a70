// Read-only access to HuggingFace safetensors checkpoints, memory-mapped.
//
// Open() validates the whole header before anything is read: header size sane and
// inside the file, JSON well formed, known dtypes, non-negative shapes, offsets inside
// the data section, byte length = shape × dtype size (overflow-checked), no two tensors
// overlapping. A corrupt or truncated file is an INVALID_ARGUMENT naming the file and
// the problem, never a crash.
//
// Thread-safety: immutable after Open; views stay valid while the object lives.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/dtype.h"

namespace tessera::models {

struct TensorView {
  std::string dtype;  // the safetensors dtype string ("F32", "BF16", "I64", ...)
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  // Where the bytes lie in their file (fd -1: in memory only). Bulk reads go through
  // ReadBytes: pread copies from the page cache at memory speed, while touching a
  // mapping takes a page fault per few pages (on virtual machines, most of the load
  // time).
  int fd = -1;
  uint64_t file_offset = 0;

  int64_t numel() const;
};

// Bytes [offset, offset + n) of the tensor into `dst`: pread from its file, or a copy
// from memory. REQUIRES: offset + n <= view.nbytes.
absl::Status ReadBytes(const TensorView& view, uint64_t offset, uint64_t n, void* dst);

// Something that yields named tensors: a checkpoint on disk, or weights made in memory
// (benchmarks).
class TensorSource {
 public:
  virtual ~TensorSource() = default;
  // nullptr when absent.
  virtual const TensorView* Find(const std::string& name) const = 0;
};

// INVALID_ARGUMENT naming the tensor unless its dtype is F32, F16 or BF16.
absl::Status CheckFloatTensor(const std::string& name, const TensorView& view);

// Converts elements [index, index + count) of a floating-point tensor to float32.
// REQUIRES: CheckFloatTensor(view) is OK.
void ReadFloatRun(const TensorView& view, int64_t index, int64_t count, float* out);

// Copies elements [index, index + count) of a floating-point tensor into `out` as
// `to`: the bytes as they are when the dtypes match, converted otherwise.
// REQUIRES: CheckFloatTensor(view) is OK.
void ReadRun(const TensorView& view, int64_t index, int64_t count, DType to, void* out);

// The whole tensor as float32; other dtypes give INVALID_ARGUMENT.
// REQUIRES: `out` has room for view.numel() floats.
absl::Status ReadAsFloat(const std::string& name, const TensorView& view, float* out);

// The storage dtype for weights read from `view`: the checkpoint's own (F32, F16 or
// BF16), so that half-precision weights take half the memory and half the bytes per
// decoded token; the kernels widen them in registers.
DType WeightDTypeOf(const TensorView& view);

class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }

 private:
  SafetensorsFile() = default;
  int fd_ = -1;
  void* map_ = nullptr;
  size_t map_size_ = 0;
  std::map<std::string, TensorView> tensors_;
};

// A model folder: model.safetensors, or shards listed by model.safetensors.index.json.
class Checkpoint : public TensorSource {
 public:
  static absl::StatusOr<std::unique_ptr<Checkpoint>> Open(const std::string& model_dir);
  const TensorView* Find(const std::string& name) const override;
  size_t num_tensors() const { return index_.size(); }
  // Every tensor of every shard, by name.
  const std::map<std::string, const TensorView*>& tensors() const { return index_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

}  // namespace tessera::models
