// CreateNcclCommunicator in a build without the CUDA toolkit.
#include "parallel/nccl_communicator.h"

namespace tessera::parallel {

absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(int, int, RendezvousStore&, const NcclOptions&) {
  return absl::FailedPreconditionError("this build has no CUDA: the NCCL backend needs TESSERA_CUDA and nvcc");
}

}  // namespace tessera::parallel
