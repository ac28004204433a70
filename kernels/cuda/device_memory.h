// Device memory owned by an object, and CUDA errors as statuses: what the GPU model
// and engine hold their buffers in. Plain C++ (no CUDA types), so C++20 code can use it.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace tessera::kernels::cuda {

// A CUDA runtime or launcher error code (cudaError_t as int) as a status naming `what`;
// OK for 0.
absl::Status CudaStatus(int error, const char* what);

// Returns from the enclosing function when a CUDA call or launcher fails.
#define RETURN_IF_CUDA(expr)                                                          \
  do {                                                                                \
    if (const int e_ = static_cast<int>(expr); e_ != 0) {                             \
      return ::tessera::kernels::cuda::CudaStatus(e_, #expr);                         \
    }                                                                                 \
  } while (0)

// Device memory of the current device, freed with the object. Reserve grows it
// (contents not kept); it never shrinks, so per-step scratch settles at its peak.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(DeviceMemory&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceMemory& operator=(DeviceMemory&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    return *this;
  }
  ~DeviceMemory();

  absl::Status Reserve(size_t bytes);
  // Copies `bytes` from the host, growing first.
  absl::Status Upload(const void* host, size_t bytes);
  template <typename T>
  absl::Status Upload(const std::vector<T>& host) {
    return Upload(host.data(), host.size() * sizeof(T));
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  bool empty() const { return ptr_ == nullptr; }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tessera::kernels::cuda
