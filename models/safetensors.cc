#include "models/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bf16.h"
#include "common/json_int.h"
#include "common/read_at.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace tessera::models {
namespace {

// A header larger than this is not a real checkpoint (the reference limit is 100 MB).
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

// Bytes per element of every dtype the format defines (not all are loadable weights).
int DTypeBytes(const std::string& dtype) {
  static const std::map<std::string, int> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E4M3", 1}, {"F8_E5M2", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = kSizes.find(dtype);
  return it == kSizes.end() ? 0 : it->second;
}

absl::Status Corrupt(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("corrupt safetensors file ", path, ": ", what));
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

DType WeightDTypeOf(const TensorView& view) {
  if (view.dtype == "BF16") return DType::kBF16;
  return view.dtype == "F16" ? DType::kF16 : DType::kF32;
}

absl::Status CheckFloatTensor(const std::string& name, const TensorView& view) {
  if (view.dtype == "F32" || view.dtype == "F16" || view.dtype == "BF16") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("tensor ", name, " has dtype ", view.dtype, "; weights must be F32, F16 or BF16"));
}

void ReadFloatRun(const TensorView& view, int64_t index, int64_t count, float* out) {
  if (view.dtype == "F32") {
    std::memcpy(out, view.data + index * sizeof(float), count * sizeof(float));
    return;
  }
  const bool bf16 = view.dtype == "BF16";
  for (int64_t i = 0; i < count; ++i) {
    uint16_t h;
    std::memcpy(&h, view.data + (index + i) * 2, 2);
    out[i] = bf16 ? Bf16ToFloat(h) : F16ToFloat(h);
  }
}

void ReadRun(const TensorView& view, int64_t index, int64_t count, DType to, void* out) {
  const DType from = WeightDTypeOf(view);
  if (from == to) {
    std::memcpy(out, view.data + index * DTypeSize(from), count * DTypeSize(from));
    return;
  }
  if (to == DType::kF32) {
    ReadFloatRun(view, index, count, static_cast<float*>(out));
    return;
  }
  std::vector<float> wide(static_cast<size_t>(count));
  ReadFloatRun(view, index, count, wide.data());
  uint16_t* narrow = static_cast<uint16_t*>(out);
  for (int64_t i = 0; i < count; ++i) narrow[i] = to == DType::kBF16 ? FloatToBf16(wide[i]) : FloatToF16(wide[i]);
}

absl::Status ReadAsFloat(const std::string& name, const TensorView& view, float* out) {
  RETURN_IF_ERROR(CheckFloatTensor(name, view));
  ReadFloatRun(view, 0, view.numel(), out);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::NotFoundError(absl::StrCat("cannot open ", path, ": ", strerror(errno)));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat("cannot stat ", path));
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->fd_ = fd;
  if (file_size < 8) {
    return Corrupt(path, absl::StrCat("file is ", file_size, " bytes, shorter than the 8-byte header length"));
  }
  void* map = mmap(nullptr, file_size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat("cannot mmap ", path));
  file->map_ = map;
  file->map_size_ = file_size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);

  uint64_t header_len;
  std::memcpy(&header_len, bytes, 8);
  if (header_len > kMaxHeaderBytes || header_len > file_size - 8) {
    return Corrupt(path, absl::StrCat("header length ", header_len, " does not fit in a file of ",
                                      file_size, " bytes"));
  }
  const uint8_t* data = bytes + 8 + header_len;
  const uint64_t data_size = file_size - 8 - header_len;

  nlohmann::json header = nlohmann::json::parse(bytes + 8, data, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object()) return Corrupt(path, "header is not a JSON object");

  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string& name = it.key();
    const nlohmann::json& entry = it.value();
    auto bad = [&](const std::string& what) { return Corrupt(path, absl::StrCat("tensor ", name, ": ", what)); };
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      return bad("entry needs dtype, shape and data_offsets");
    }
    if (!entry["dtype"].is_string()) return bad("dtype is not a string");
    TensorView view;
    view.dtype = entry["dtype"].get<std::string>();
    const int elem = DTypeBytes(view.dtype);
    if (elem == 0) return bad(absl::StrCat("unknown dtype ", view.dtype));
    if (!entry["shape"].is_array()) return bad("shape is not a list");
    uint64_t numel = 1;
    for (const auto& d : entry["shape"]) {
      const std::optional<int64_t> checked = JsonInt(d, 0, std::numeric_limits<int64_t>::max());
      if (!checked) return bad(absl::StrCat("shape has a dimension that is not a non-negative integer: ", d.dump()));
      const auto dim = static_cast<uint64_t>(*checked);
      if (dim != 0 && numel > data_size / dim) return bad("shape is larger than the file");
      numel *= dim;
      view.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& offs = entry["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned()) {
      return bad("data_offsets must be two non-negative integers");
    }
    const uint64_t begin = offs[0].get<uint64_t>(), end = offs[1].get<uint64_t>();
    if (begin > end || end > data_size) {
      return bad(absl::StrCat("data_offsets [", begin, ", ", end, ") fall outside the ", data_size,
                              "-byte data section (truncated file?)"));
    }
    if (end - begin != numel * elem) {
      return bad(absl::StrCat("holds ", end - begin, " bytes but shape x dtype needs ", numel * elem));
    }
    view.data = data + begin;
    view.nbytes = end - begin;
    view.fd = fd;
    view.file_offset = 8 + header_len + begin;
    if (view.nbytes > 0) ranges.emplace_back(begin, end);
    file->tensors_.emplace(name, std::move(view));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i) {
    if (ranges[i].first < ranges[i - 1].second) {
      return Corrupt(path, absl::StrCat("two tensors overlap at byte ", ranges[i].first));
    }
  }
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) munmap(map_, map_size_);
  if (fd_ >= 0) ::close(fd_);
}

absl::Status ReadBytes(const TensorView& view, uint64_t offset, uint64_t n, void* dst) {
  if (view.fd < 0) {
    std::memcpy(dst, view.data + offset, n);
    return absl::OkStatus();
  }
  if (absl::Status read = ReadAt(view.fd, view.file_offset + offset, dst, n); !read.ok()) {
    return absl::DataLossError(absl::StrCat("cannot read the checkpoint: ", read.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Checkpoint>> Checkpoint::Open(const std::string& model_dir) {
  namespace fs = std::filesystem;
  auto checkpoint = std::make_unique<Checkpoint>();
  std::vector<std::string> shard_names;
  const fs::path index_path = fs::path(model_dir) / "model.safetensors.index.json";
  std::error_code ec;
  if (fs::exists(index_path, ec)) {
    std::ifstream in(index_path);
    nlohmann::json index = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (index.is_discarded() || !index.contains("weight_map") || !index["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path.string(), ": not a safetensors index (no weight_map object)"));
    }
    std::set<std::string> unique;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
      if (!shard.is_string() || shard.get<std::string>().find('/') != std::string::npos) {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path.string(), ": bad shard name for tensor ", tensor));
      }
      unique.insert(shard.get<std::string>());
    }
    shard_names.assign(unique.begin(), unique.end());
  } else if (fs::exists(fs::path(model_dir) / "model.safetensors", ec)) {
    shard_names.push_back("model.safetensors");
  } else {
    return absl::NotFoundError(absl::StrCat(
        "no model.safetensors or model.safetensors.index.json in ", model_dir));
  }
  for (const std::string& shard : shard_names) {
    ASSIGN_OR_RETURN(auto file, SafetensorsFile::Open((fs::path(model_dir) / shard).string()));
    for (const auto& [name, view] : file->tensors()) {
      if (!checkpoint->index_.emplace(name, &view).second) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", name, " appears in more than one shard of ", model_dir));
      }
    }
    checkpoint->files_.push_back(std::move(file));
  }
  return checkpoint;
}

const TensorView* Checkpoint::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

}  // namespace tessera::models
