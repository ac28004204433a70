// A weight as the checkpoint loader hands it to a backend, before the backend packs it
// into its own layout: [rows, cols] elements of `dtype` (the checkpoint's precision,
// and the one the backend stores it in), given row by row. A row points into the
// loader's read buffer where the file holds it as is (its bytes read once, then packed);
// rows that had to be gathered (a transposed tensor), converted, or padded with zeros
// live in the matrix's own memory. The loader reuses its buffer for the next weight: a
// backend copies what it keeps.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "common/aligned_buffer.h"
#include "common/bf16.h"
#include "common/dtype.h"

namespace tessera::kernels {

class HostMatrix {
 public:
  HostMatrix() = default;
  // Zeroed rows in the matrix's own memory (fill them through mutable_row).
  HostMatrix(int64_t rows, int64_t cols, DType dtype)
      : rows_(rows), cols_(cols), dtype_(dtype), owned_(static_cast<size_t>(rows * cols) * DTypeSize(dtype)) {
    for (int64_t r = 0; r < rows; ++r) row_data_.push_back(owned_.as<uint8_t>() + r * row_bytes());
  }
  // Rows that lie elsewhere (null: a row of zeros). The caller keeps them alive until
  // the matrix is packed.
  HostMatrix(int64_t cols, DType dtype, std::vector<const uint8_t*> rows)
      : rows_(static_cast<int64_t>(rows.size())), cols_(cols), dtype_(dtype), row_data_(std::move(rows)) {
    for (const uint8_t*& row : row_data_) {
      if (row != nullptr) continue;
      if (owned_.size() == 0) owned_ = AlignedBuffer(row_bytes());
      row = owned_.as<uint8_t>();
    }
  }

  // `values` ([rows, cols] floats) rounded to `dtype` (tests, benchmarks).
  static HostMatrix FromFloats(int64_t rows, int64_t cols, DType dtype, const float* values) {
    HostMatrix m(rows, cols, dtype);
    for (int64_t i = 0; i < rows * cols; ++i) {
      switch (dtype) {
        case DType::kF32: m.owned_.as<float>()[i] = values[i]; break;
        case DType::kF16: m.owned_.as<uint16_t>()[i] = FloatToF16(values[i]); break;
        case DType::kBF16: m.owned_.as<uint16_t>()[i] = FloatToBf16(values[i]); break;
      }
    }
    return m;
  }

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  DType dtype() const { return dtype_; }
  size_t row_bytes() const { return static_cast<size_t>(cols_) * DTypeSize(dtype_); }
  const uint8_t* row(int64_t r) const { return row_data_[r]; }
  std::span<const uint8_t* const> row_data() const { return row_data_; }
  // REQUIRES: the matrix was made with its own memory (the first constructor).
  uint8_t* mutable_row(int64_t r) { return owned_.as<uint8_t>() + r * row_bytes(); }

  // Element (r, c) widened to fp32.
  float At(int64_t r, int64_t c) const {
    const uint8_t* p = row_data_[r] + c * DTypeSize(dtype_);  // a file's rows may be unaligned
    if (dtype_ == DType::kF32) {
      float f;
      std::memcpy(&f, p, sizeof f);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, p, sizeof h);
    return dtype_ == DType::kBF16 ? Bf16ToFloat(h) : F16ToFloat(h);
  }

 private:
  int64_t rows_ = 0;
  int64_t cols_ = 0;
  DType dtype_ = DType::kF32;
  AlignedBuffer owned_;
  std::vector<const uint8_t*> row_data_;
};

}  // namespace tessera::kernels
