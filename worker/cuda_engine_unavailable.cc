// MakeCudaEngine in a build without the CUDA toolkit.
#include "worker/engine.h"

namespace tessera::worker {

absl::StatusOr<std::unique_ptr<Engine>> MakeCudaEngine(const std::string&, int, const models::ModelOptions&, int, KvDtype, int32_t,
                                                       int64_t) {
  return absl::FailedPreconditionError("this build has no CUDA: --device cuda needs TESSERA_CUDA and nvcc");
}

}  // namespace tessera::worker
