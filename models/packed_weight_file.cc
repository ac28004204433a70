#include "models/packed_weight_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cerrno>
#include <cstring>
#include <span>

#include "absl/strings/str_cat.h"
#include "common/read_at.h"
#include "common/status.h"

namespace tessera::models {
namespace {

constexpr char kMagic[8] = {'T', 'S', 'R', 'P', 'A', 'C', 'K', '\0'};
constexpr uint32_t kFormatVersion = 1;
// Reads and checksums go in pieces this size, so each piece is hashed while it is
// still in the CPU's cache.
constexpr size_t kChunk = size_t{4} << 20;

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t key_bytes;
  uint64_t records;
  uint64_t file_size;
};
static_assert(sizeof(Header) == 32);

struct RecordHeader {
  uint8_t use;
  uint8_t dtype;
  uint8_t zero[6];
  int64_t rows;
  int64_t cols;
  uint64_t bytes;
  uint64_t checksum;
};
static_assert(sizeof(RecordHeader) == 40);

absl::Status Errno(const std::string& what) { return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno))); }

// ReadAt (common/read_at.h), naming the file in its DATA_LOSS.
absl::Status ReadNamed(int fd, const std::string& path, uint64_t offset, void* out, size_t n) {
  if (absl::Status read = tessera::ReadAt(fd, offset, out, n); !read.ok()) {
    return absl::DataLossError(absl::StrCat("reading ", path, ": ", read.message()));
  }
  return absl::OkStatus();
}

}  // namespace

PackedWeightReader::PackedWeightReader(int fd, std::string path, uint64_t records, uint64_t offset, uint64_t size)
    : fd_(fd), path_(std::move(path)), records_left_(records), offset_(offset), size_(size) {}

PackedWeightReader::~PackedWeightReader() { close(fd_); }

absl::StatusOr<std::unique_ptr<PackedWeightReader>> PackedWeightReader::Open(const std::string& path,
                                                                             const std::string& key) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) return absl::NotFoundError(absl::StrCat(path, " does not exist"));
  if (fd < 0) return Errno(absl::StrCat("opening ", path));
  std::unique_ptr<PackedWeightReader> reader(new PackedWeightReader(fd, path, 0, 0, 0));
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // read front to back: a larger read-ahead
  struct stat st;
  if (fstat(fd, &st) != 0) return Errno(absl::StrCat("stat ", path));
  Header header;
  RETURN_IF_ERROR(ReadNamed(fd, path, 0, &header, sizeof(header)));
  if (std::memcmp(header.magic, kMagic, sizeof(kMagic)) != 0 || header.version != kFormatVersion) {
    return absl::DataLossError(absl::StrCat(path, " is not a packed-weight file of format ", kFormatVersion));
  }
  if (header.file_size != static_cast<uint64_t>(st.st_size)) {
    return absl::DataLossError(
        absl::StrCat(path, " holds ", st.st_size, " bytes, its header says ", header.file_size, " (truncated?)"));
  }
  if (sizeof(header) + header.key_bytes > header.file_size) {
    return absl::DataLossError(absl::StrCat(path, ": its key runs past its end"));
  }
  std::string stored(header.key_bytes, '\0');
  RETURN_IF_ERROR(ReadNamed(fd, path, sizeof(header), stored.data(), stored.size()));
  if (stored != key) {
    return absl::DataLossError(absl::StrCat(path, " was written for another model, shard or kernel layout"));
  }
  reader->records_left_ = header.records;
  reader->offset_ = sizeof(header) + stored.size();
  reader->size_ = header.file_size;
  return reader;
}

absl::StatusOr<std::unique_ptr<kernels::Weight>> PackedWeightReader::Next(kernels::Backend& backend,
                                                                          kernels::WeightUse use, int64_t rows,
                                                                          int64_t cols, DType dtype) {
  if (records_left_ == 0) return absl::DataLossError(absl::StrCat(path_, " holds fewer weights than the model"));
  RecordHeader record;
  RETURN_IF_ERROR(ReadNamed(fd_, path_, offset_, &record, sizeof(record)));
  if (record.use != static_cast<uint8_t>(use) || record.dtype != static_cast<uint8_t>(dtype) || record.rows != rows ||
      record.cols != cols) {
    return absl::DataLossError(absl::StrCat(path_, ": the weight at byte ", offset_, " is not the [", rows, ", ", cols,
                                            "] ", std::string(DTypeName(dtype)), " weight the model loads there"));
  }
  const uint64_t payload = offset_ + sizeof(record);
  if (record.bytes > size_ - payload) return absl::DataLossError(absl::StrCat(path_, " ends early"));
  auto fill = [&](void* out) -> absl::Status {
    XXH3_state_t* state = XXH3_createState();
    if (state == nullptr) return absl::ResourceExhaustedError("XXH3_createState");
    XXH3_64bits_reset(state);
    absl::Status status;
    auto* dst = static_cast<uint8_t*>(out);
    for (uint64_t done = 0; done < record.bytes && status.ok(); done += kChunk) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, record.bytes - done));
      status = ReadNamed(fd_, path_, payload + done, dst + done, n);
      XXH3_64bits_update(state, dst + done, n);
    }
    const uint64_t checksum = XXH3_64bits_digest(state);
    XXH3_freeState(state);
    RETURN_IF_ERROR(status);
    if (checksum != record.checksum) {
      return absl::DataLossError(absl::StrCat(path_, ": the weight at byte ", offset_, " does not match its checksum"));
    }
    return absl::OkStatus();
  };
  absl::StatusOr<std::unique_ptr<kernels::Weight>> weight =
      backend.RestorePacked(use, rows, cols, dtype, record.bytes, fill);
  if (weight.status().code() == absl::StatusCode::kInvalidArgument) {  // a size this layout never has
    return absl::DataLossError(absl::StrCat(path_, ": ", weight.status().message()));
  }
  if (!weight.ok()) return weight.status();
  offset_ = payload + record.bytes;
  --records_left_;
  return weight;
}

absl::Status PackedWeightReader::CheckFinished() const {
  if (records_left_ != 0 || offset_ != size_) {
    return absl::DataLossError(absl::StrCat(path_, " holds more weights than the model"));
  }
  return absl::OkStatus();
}

PackedWeightWriter::PackedWeightWriter(int fd, std::string path, std::string temp_path, size_t key_bytes)
    : fd_(fd), path_(std::move(path)), temp_path_(std::move(temp_path)), key_bytes_(static_cast<uint32_t>(key_bytes)) {}

PackedWeightWriter::~PackedWeightWriter() {
  if (!committed_) unlink(temp_path_.c_str());
  close(fd_);  // releases the lock
}

absl::StatusOr<std::unique_ptr<PackedWeightWriter>> PackedWeightWriter::Create(const std::string& path,
                                                                               const std::string& key) {
  const std::string temp = path + ".partial";
  // The lock is on the file the name points at: after taking it, check that the name
  // still points there (a writer that just finished renamed it away, or a crashed
  // one's leftover was replaced), else start over on the new file.
  for (int attempt = 0; attempt < 3; ++attempt) {
    const int fd = open(temp.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Errno(absl::StrCat("creating ", temp));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      if (errno == EWOULDBLOCK) return absl::AlreadyExistsError(absl::StrCat(temp, " is being written by another process"));
      return Errno(absl::StrCat("locking ", temp));
    }
    struct stat held, named;
    if (fstat(fd, &held) != 0 || stat(temp.c_str(), &named) != 0 || held.st_ino != named.st_ino ||
        held.st_dev != named.st_dev) {
      close(fd);
      continue;
    }
    if (ftruncate(fd, 0) != 0) {
      close(fd);
      return Errno(absl::StrCat("truncating ", temp));
    }
    std::unique_ptr<PackedWeightWriter> writer(new PackedWeightWriter(fd, path, temp, key.size()));
    writer->offset_ = sizeof(Header);  // the header is written by Commit, when it is complete
    RETURN_IF_ERROR(writer->Write(key.data(), key.size()));
    return writer;
  }
  return absl::AlreadyExistsError(absl::StrCat(temp, " keeps changing: another process is writing it"));
}

absl::Status PackedWeightWriter::Write(const void* data, size_t bytes) {
  const auto* src = static_cast<const uint8_t*>(data);
  while (bytes > 0) {
    const ssize_t n = pwrite(fd_, src, std::min(bytes, kChunk), static_cast<off_t>(offset_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(absl::StrCat("writing ", temp_path_));
    src += n;
    offset_ += static_cast<uint64_t>(n);
    bytes -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

void PackedWeightWriter::Append(const kernels::Backend& backend, const kernels::Weight& weight, kernels::WeightUse use,
                                DType dtype) {
  pending_.push_back({&backend, &weight, use, dtype});
}

absl::Status PackedWeightWriter::Commit() {
  for (const Pending& p : pending_) {
    const std::span<const uint8_t> bytes = p.backend->PackedBytes(*p.weight);
    RecordHeader record{};
    record.use = static_cast<uint8_t>(p.use);
    record.dtype = static_cast<uint8_t>(p.dtype);
    record.rows = p.weight->rows();
    record.cols = p.weight->cols();
    record.bytes = bytes.size();
    record.checksum = XXH3_64bits(bytes.data(), bytes.size());
    RETURN_IF_ERROR(Write(&record, sizeof(record)));
    RETURN_IF_ERROR(Write(bytes.data(), bytes.size()));
  }
  Header header{};
  std::memcpy(header.magic, kMagic, sizeof(kMagic));
  header.version = kFormatVersion;
  header.records = pending_.size();
  header.file_size = offset_;
  header.key_bytes = key_bytes_;
  const uint64_t end = offset_;
  offset_ = 0;
  RETURN_IF_ERROR(Write(&header, sizeof(header)));
  offset_ = end;
  if (rename(temp_path_.c_str(), path_.c_str()) != 0) return Errno(absl::StrCat("renaming ", temp_path_));
  committed_ = true;
  return absl::OkStatus();
}

}  // namespace tessera::models
