#include "common/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace tessera {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

size_t RoundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }

// Fresh zeroed pages on a 2 MiB boundary, as transparent huge pages where the kernel
// gives them: loading a model touches gigabytes, and on virtual machines every 4 KiB
// page fault is a trap to the hypervisor (most of the load time before this). The
// pages are populated here (MADV_POPULATE_WRITE, Linux 5.14; a memset otherwise), so
// no fault waits for the hot path. Null when the kernel refuses the mapping.
void* MapHuge(size_t bytes) {
  const size_t span = bytes + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t begin = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = RoundUp(begin, kHugePage);
  if (aligned > begin) munmap(raw, aligned - begin);
  const uintptr_t tail = aligned + bytes, end = begin + span;
  if (end > tail) munmap(reinterpret_cast<void*>(tail), end - tail);
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, bytes, MADV_HUGEPAGE);
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  if (madvise(p, bytes, MADV_POPULATE_WRITE) != 0) std::memset(p, 0, bytes);
  return p;
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t bytes) { Reserve(bytes); }

AlignedBuffer::~AlignedBuffer() { Release(); }

AlignedBuffer::AlignedBuffer(AlignedBuffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mapped_bytes_(std::exchange(other.mapped_bytes_, 0)) {}

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& other) noexcept {
  if (this != &other) {
    Release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapped_bytes_ = std::exchange(other.mapped_bytes_, 0);
  }
  return *this;
}

void AlignedBuffer::Release() {
  if (mapped_bytes_ > 0) {
    munmap(data_, mapped_bytes_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
  size_ = mapped_bytes_ = 0;
}

void AlignedBuffer::Reserve(size_t bytes) {
  if (bytes <= size_) return;
  Release();
  if (bytes >= kHugePage) {
    const size_t mapped = RoundUp(bytes, kHugePage);
    if (void* p = MapHuge(mapped)) {
      data_ = p;
      size_ = bytes;
      mapped_bytes_ = mapped;
      return;
    }
  }
  const size_t rounded = RoundUp(bytes, kAlignment);
  data_ = std::aligned_alloc(kAlignment, rounded);
  if (data_ == nullptr) throw std::bad_alloc();
  std::memset(data_, 0, rounded);
  size_ = bytes;
}

}  // namespace tessera
