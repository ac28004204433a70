// A heap buffer aligned to 64 bytes, so 512-bit loads never straddle cache lines.
//
// Owns its memory; movable, not copyable. Contents start zeroed and are touched at
// allocation, so first-touch page faults happen at load time, not on the hot path.
// Buffers of 2 MiB and more are mapped on huge-page boundaries and asked for
// transparent huge pages (fewer faults while loading, fewer TLB misses when weights
// stream).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tessera {

class AlignedBuffer {
 public:
  static constexpr size_t kAlignment = 64;

  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t bytes);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& other) noexcept;
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Grows to at least `bytes` (contents are not kept); never shrinks.
  void Reserve(size_t bytes);

  // Room for at least `count` Ts (contents not kept when it grows), as a T*.
  template <typename T>
  T* ReserveFor(size_t count) {
    Reserve(count * sizeof(T));
    return as<T>();
  }

  size_t size() const { return size_; }
  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T>
  T* as() { return static_cast<T*>(data_); }
  template <typename T>
  const T* as() const { return static_cast<const T*>(data_); }

 private:
  void Release();

  void* data_ = nullptr;
  size_t size_ = 0;
  size_t mapped_bytes_ = 0;  // > 0: data_ is an mmap of this many bytes
};

}  // namespace tessera
