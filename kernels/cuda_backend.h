// One CUDA GPU as a backend (kernels/backend.h): weights on the device in their
// checkpoint precision (fp32 checkpoints run fp32 GEMMs, exact against the CPU; bf16 ones
// bf16 GEMMs with fp32 accumulation, through cuBLAS; fp16 ones are widened to fp32),
// activations and norms in fp32, the kernels of kernels/cuda/ on the default stream.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "kernels/backend.h"

namespace tessera::kernels {

// The backend of CUDA device `device`. FAILED_PRECONDITION when there is no such device,
// or when this build has no CUDA (built where nvcc was not found).
absl::StatusOr<std::unique_ptr<Backend>> MakeCudaBackend(int device);

}  // namespace tessera::kernels
