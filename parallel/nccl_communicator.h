// The GPU Communicator backend on NCCL. Buffers passed to its collectives are device
// memory of `device`; everything else is as Communicator says (timeouts included:
// a collective that does not finish in time aborts the communicator). A collective
// starts after the work already queued on the device's default stream and has
// finished when the call returns, so a model on the default stream needs no other
// synchronisation.
//
// Built only where the CUDA toolkit is (TESSERA_CUDA); elsewhere
// CreateNcclCommunicator says FAILED_PRECONDITION.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"
#include "parallel/rendezvous_store.h"

namespace tessera::parallel {

struct NcclOptions {
  int device = 0;                            // CUDA device of this rank
  std::chrono::milliseconds timeout{30000};  // rendezvous and every collective
  std::string prefix = "tessera-nccl";       // store key of the group's NCCL unique id
};

// Rank 0 creates the NCCL unique id and publishes it in `store`; the others read it.
absl::StatusOr<std::unique_ptr<Communicator>> CreateNcclCommunicator(int rank, int size, RendezvousStore& store,
                                                                     const NcclOptions& options = {});

}  // namespace tessera::parallel
