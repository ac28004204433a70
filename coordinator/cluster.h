// Cluster: the coordinator's view of its workers. Serves the internal Coordinator
// service (Register, Heartbeat), turns each registered worker into a replica group,
// drops workers that stop heartbeating, drains workers on request, and routes
// requests to the ready group with the least outstanding work. Requests of a lost
// group are routed again and recomputed; only when no group can take them do they
// fail with UNAVAILABLE.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/replica_group.h"
#include "tessera/v1/worker.grpc.pb.h"

namespace tessera::coordinator {

struct ClusterOptions {
  GroupOptions group;
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{3000};
};

class Cluster final : public v1::internal::Coordinator::Service {
 public:
  explicit Cluster(const ClusterOptions& options);
  ~Cluster() override;

  grpc::Status Register(grpc::ServerContext*, const v1::internal::RegisterRequest* request,
                        v1::internal::RegisterResponse* response) override;
  grpc::Status Heartbeat(grpc::ServerContext*, const v1::internal::HeartbeatRequest* request,
                         v1::internal::HeartbeatResponse* response) override;

  // Hands the request to a ready group; UNAVAILABLE when there is none, or
  // INVALID_ARGUMENT when the sequence can never fit any group's KV pool.
  absl::Status Route(std::shared_ptr<Request> request);
  absl::Status Drain(const std::string& worker_id);
  std::vector<v1::GroupInfo> Groups() const;
  int total_waiting() const;

 private:
  struct Member {
    std::string worker_id;
    std::unique_ptr<ReplicaGroup> group;
    std::chrono::steady_clock::time_point last_heartbeat;
  };
  void OnGroupLost(ReplicaGroup* group, std::vector<std::shared_ptr<Request>> requests);
  void Monitor();

  const ClusterOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Member> members_;  // by worker id; guarded by mu_
  std::vector<std::unique_ptr<ReplicaGroup>> retired_;  // dead groups, joined later; guarded by mu_
  int next_id_ = 1;
  std::atomic<bool> stop_{false};
  std::thread monitor_;
};

}  // namespace tessera::coordinator
