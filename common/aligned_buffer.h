// A heap buffer aligned to 64 bytes, so 512-bit loads never straddle cache lines.
//
// Owns its memory; movable, not copyable. Contents start zeroed and are touched at
// allocation, so first-touch page faults happen at load time, not on the hot path.
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
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tessera
