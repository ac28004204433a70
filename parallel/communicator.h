// Communicator: the collectives of a parallel group (tensor- or expert-parallel
// ranks), on float32 buffers.
//
// Backends sit behind this one interface and are chosen at run time: Gloo over TCP
// for CPU devices (CreateGlooCommunicator), NCCL for CUDA devices
// (parallel/nccl_communicator.h). The model's parallel layers call these; family
// code never does. Every collective has a timeout: when a peer dies,
// the survivors get an error (UNAVAILABLE or DEADLINE_EXCEEDED) instead of hanging.
//
// Thread-safety: one collective at a time per communicator; all ranks call the same
// collectives in the same order.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "parallel/rendezvous_store.h"

namespace tessera::parallel {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Whether the collectives take device (GPU) buffers, as NCCL's do; host buffers
  // otherwise (a GPU model stages its tensors through host memory for those).
  virtual bool device_buffers() const { return false; }

  // data = sum over ranks of data, in place.
  virtual absl::Status AllReduceSum(std::span<float> data) = 0;
  // out = concatenation of every rank's `in` in rank order (out.size() = size * in.size()).
  virtual absl::Status AllGather(std::span<const float> in, std::span<float> out) = 0;
  // data = root's data on every rank.
  virtual absl::Status Broadcast(std::span<float> data, int root) = 0;
  // Rank r sends send_counts[p] floats (consecutive in `in`) to every rank p and
  // receives recv_counts[p] floats from it (consecutive in `out`, in rank order).
  virtual absl::Status AllToAllV(std::span<const float> in, const std::vector<int64_t>& send_counts,
                                 std::span<float> out, const std::vector<int64_t>& recv_counts) = 0;
  virtual absl::Status Barrier() = 0;
};

struct GlooOptions {
  std::string hostname = "127.0.0.1";  // address this rank listens on for its peers
  std::chrono::milliseconds timeout{30000};  // rendezvous and every collective
  std::string prefix = "tessera";  // namespaces the keys of one group in the store
  // Small all-reduces (the per-layer ones of tensor parallelism) spin on the socket in
  // the calling thread instead of sleeping until Gloo's I/O thread wakes them: much
  // lower latency, but a core per waiting rank. Use only when every rank has a core.
  // (Power-of-two groups only; others always sleep.)
  bool busy_poll = false;
};

// Connects `size` ranks through `store` (every rank calls this with its own rank).
absl::StatusOr<std::unique_ptr<Communicator>> CreateGlooCommunicator(int rank, int size, RendezvousStore& store,
                                                                     const GlooOptions& options = {});

}  // namespace tessera::parallel
