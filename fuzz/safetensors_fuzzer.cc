// The safetensors header parser (models::SafetensorsFile::Open) on arbitrary files:
// every file either opens, and then each tensor's bytes can be read whole, or is
// refused with a status. Never a crash, never a read outside the file.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "models/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/tessera-fuzz-" + std::to_string(getpid()) + ".safetensors";
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  auto file = tessera::models::SafetensorsFile::Open(path);
  if (!file.ok()) return 0;
  std::vector<uint8_t> buffer;
  for (const auto& [name, view] : (*file)->tensors()) {
    buffer.resize(view.nbytes);
    if (!tessera::models::ReadBytes(view, 0, view.nbytes, buffer.data()).ok()) __builtin_trap();
    if (view.nbytes && std::memcmp(buffer.data(), view.data, view.nbytes) != 0) __builtin_trap();
  }
  return 0;
}
