// The communicators one rank of a replica needs (tp_size x ep_size ranks; rank =
// ep_rank * tp_size + tp_rank): its tensor-parallel group (the ranks of its ep_rank)
// when tp_size > 1, and every rank of the replica (the MoE sum) when ep_size > 1. One
// place for the ranks and rendezvous prefixes the worker, the CLI and the tests use.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "parallel/communicator.h"

namespace tessera::parallel {

struct ReplicaRank {
  int tp_rank = 0, tp_size = 1;
  int ep_rank = 0, ep_size = 1;
  int rank() const { return ep_rank * tp_size + tp_rank; }
  int size() const { return tp_size * ep_size; }
};

struct ReplicaCommunicators {
  std::unique_ptr<Communicator> tp;   // null when tp_size is 1
  std::unique_ptr<Communicator> all;  // null when ep_size is 1
};

// Makes a communicator of `size` ranks as rank `rank`, meeting under `prefix`.
using ConnectFn =
    std::function<absl::StatusOr<std::unique_ptr<Communicator>>(int rank, int size, const std::string& prefix)>;

// Connects both groups through `connect`, under "<prefix>/tp-<ep_rank>" and
// "<prefix>/all" (without "<prefix>/" when the prefix is empty).
absl::StatusOr<ReplicaCommunicators> ConnectReplica(const ReplicaRank& rank, const std::string& prefix,
                                                    const ConnectFn& connect);

}  // namespace tessera::parallel
