// The packed-weight cache's reader (models/packed_weight_file.h) on arbitrary files, as
// a load asks for a small model's weights (a bf16 linear layer, an f32 table, an exact
// f32 linear layer): each file either gives every weight, the shape asked for, or is
// refused with DATA_LOSS (a file that is not there: NOT_FOUND). Never a crash, never a
// read outside the file, never a weight of another size.
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <string>

#include "kernels/cpu_backend.h"
#include "models/packed_weight_file.h"

namespace {

using tessera::DType;
using tessera::kernels::WeightUse;

struct Planned {
  WeightUse use;
  int64_t rows, cols;
  DType dtype;
};
// What the seed file (corpus/packed_weight_file/three_weights) holds, in order.
constexpr Planned kPlan[] = {
    {WeightUse::kLinear, 20, 6, DType::kBF16},
    {WeightUse::kTable, 5, 4, DType::kF32},
    {WeightUse::kLinearExact, 3, 7, DType::kF32},
};
constexpr char kKey[] = "fuzz key";

void Check(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/dev/shm/tessera-fuzz-" + std::to_string(getpid()) + ".weights";
  static const auto backend = tessera::kernels::MakeCpuBackend(1, {});
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), size);
  auto reader = tessera::models::PackedWeightReader::Open(path, kKey);
  if (!reader.ok()) {
    Check(absl::IsDataLoss(reader.status()));
    return 0;
  }
  for (const Planned& p : kPlan) {
    auto weight = (*reader)->Next(*backend, p.use, p.rows, p.cols, p.dtype);
    if (!weight.ok()) {
      Check(absl::IsDataLoss(weight.status()));
      return 0;
    }
    Check((*weight)->rows() == p.rows && (*weight)->cols() == p.cols);
  }
  const absl::Status finished = (*reader)->CheckFinished();
  Check(finished.ok() || absl::IsDataLoss(finished));
  return 0;
}
