// Writes safetensors files for tests (valid ones, and deliberately broken ones).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tessera::testing {

struct TensorBytes {
  std::string name;
  std::string dtype;  // "F32", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// A well-formed file holding `tensors` in order.
void WriteSafetensors(const std::string& path, const std::vector<TensorBytes>& tensors);

// A file made of an explicit header JSON text and `data_bytes` zero bytes of data.
void WriteRawSafetensors(const std::string& path, const std::string& header_json, size_t data_bytes);

// Reads every tensor of a valid file (to rewrite it in another form).
std::vector<TensorBytes> ReadSafetensors(const std::string& path);

// A fresh empty directory under the test temp dir.
std::string MakeTempDir(const std::string& name);

}  // namespace tessera::testing
