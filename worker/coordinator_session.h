// CoordinatorSession: a worker's membership in the cluster, as steps that return a
// status. Register, then Heartbeat at the interval the coordinator names (reporting the
// host tier's KV events and the data plane's byte counts), registering again when the
// coordinator has restarted, until the coordinator releases a draining worker. Run is
// the loop tessera-worker's main() runs; the coordinator's stub is the seam tests
// replace with a scripted coordinator.
//
// Thread-safety: one thread drives a session; `draining` may be set from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kvstore/block_server.h"
#include "tessera/v1/internal/worker.grpc.pb.h"
#include "worker/worker_service.h"

namespace tessera::worker {

struct SessionOptions {
  std::string address;     // host:port of this worker's Worker service
  std::string kv_address;  // host:port of its block server, for peers
  int tp = 0;              // the group's tensor-parallel degree it asks for; 0: the coordinator's
  std::string group;       // forms groups only with workers naming the same group
  // Between registration attempts (until the coordinator names its heartbeat interval).
  std::chrono::milliseconds retry_interval{500};
  // Each call's deadline.
  std::chrono::milliseconds call_timeout{2000};
  // A draining worker that has heard nothing from the coordinator this long exits:
  // nothing can be running on it.
  std::chrono::milliseconds orphan_drain_exit{10000};
};

class CoordinatorSession {
 public:
  // `coordinator`, `service` and `block_server` (may be null) must outlive the session.
  CoordinatorSession(v1::internal::Coordinator::StubInterface* coordinator, WorkerService* service,
                     const kvstore::BlockServer* block_server, const SessionOptions& options);

  // Registers; INVALID_ARGUMENT when the coordinator refuses this worker (no retry can
  // help), UNAVAILABLE (or the call's error) when it could not be reached.
  absl::Status Register();
  // One heartbeat. True when the coordinator released the worker (it drained). A
  // coordinator that no longer knows this worker (it restarted) makes the next Run
  // step register again.
  absl::StatusOr<bool> Heartbeat(bool draining);
  // Registers and heartbeats until released (OK) or a draining worker lost its
  // coordinator (OK); the coordinator's refusal, or a model this worker can never run
  // (FAILED_PRECONDITION: no such device, a build without CUDA), ends it with an error.
  absl::Status Run(const std::atomic<bool>& draining);

  const std::string& worker_id() const { return worker_id_; }

 private:
  v1::internal::Coordinator::StubInterface* const coordinator_;
  WorkerService* const service_;
  const kvstore::BlockServer* const block_server_;
  const SessionOptions options_;
  std::string worker_id_;  // empty until registered
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_contact_;
  bool out_of_contact_ = false;  // the last call failed (logged once, until one succeeds)
};

}  // namespace tessera::worker
