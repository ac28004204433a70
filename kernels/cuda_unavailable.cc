// MakeCudaBackend in builds without the CUDA kernels (no nvcc at configure time).
#include "kernels/cuda_backend.h"

namespace tessera::kernels {

absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int) {
  return absl::FailedPreconditionError("this build of Tessera has no CUDA support (nvcc was not found)");
}

}  // namespace tessera::kernels
