// Small helpers the fuzz harnesses share: take a harness's input apart into fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace tessera::fuzz {

// Reads the input front to back; past its end every read gives zeros / empty.
class FuzzInput {
 public:
  FuzzInput(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool empty() const { return size_ == 0; }
  uint8_t Byte() { return size_ ? (--size_, *data_++) : 0; }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | Byte() << 8); }
  // The next n bytes (fewer at the end).
  std::string_view Bytes(size_t n) {
    n = n < size_ ? n : size_;
    std::string_view out(reinterpret_cast<const char*>(data_), n);
    data_ += n;
    size_ -= n;
    return out;
  }
  // A field prefixed by its 16-bit length.
  std::string_view Field() { return Bytes(U16()); }
  std::string_view Rest() { return Bytes(size_); }

 private:
  const uint8_t* data_;
  size_t size_;
};

}  // namespace tessera::fuzz
