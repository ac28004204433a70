// Cluster: the coordinator's view of its workers. Serves the internal Coordinator
// service (Register, Heartbeat, and the rendezvous store), forms replica groups of
// tp x ep registered workers in registration order (tp as each worker asks, else the
// default; only workers naming the same group together), keeps the cluster-wide index of their host-tier KV blocks, drops workers that stop
// heartbeating (and with them their group), drains on request, and routes requests to
// the ready group with the least outstanding work. Requests of a lost group are routed
// again and recomputed; only when no group can take them do they fail with
// UNAVAILABLE. The surviving workers of a lost group register again and join a new one.
//
// Thread-safety: all public methods may be called from any thread.
#pragma once

#include <chrono>
#include <functional>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/replica_group.h"
#include "coordinator/router.h"
#include "tessera/v1/internal/worker.grpc.pb.h"

namespace tessera::coordinator {

struct ClusterOptions {
  GroupOptions group;  // group.tp x group.ep workers per replica group
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds heartbeat_timeout{3000};
  // Whether the model splits over a group of tp x ep ranks (a worker's own --tp is
  // refused at registration otherwise); null: every shape is accepted.
  std::function<absl::Status(int tp, int ep)> check_group_shape;
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
  v1::KvIndexInfo IndexInfo() const;
  int registered_workers() const;
  // The registered workers' KV data-plane bytes: fetched from peers, served to peers.
  std::pair<int64_t, int64_t> kv_data_plane_bytes() const;
  int total_waiting() const;

 private:
  struct Member {
    std::string address;
    int tp = 1;                           // the group shape it joins
    std::string group_name;               // joins only workers of this name ("": any)
    std::shared_ptr<ReplicaGroup> group;  // null while waiting for enough workers
    bool draining = false;
    std::chrono::steady_clock::time_point last_heartbeat;
    int64_t kv_bytes_fetched = 0, kv_bytes_sent = 0;  // its KV data plane, as last reported
  };
  void FormGroupsLocked();
  // Removes a worker: membership, waiting list, its blocks in the index.
  void ForgetLocked(const std::string& worker_id);
  // Removes every member of `group` and schedules the group's destruction.
  void RetireLocked(const std::shared_ptr<ReplicaGroup>& group);
  std::vector<std::shared_ptr<ReplicaGroup>> DistinctGroupsLocked() const;
  void OnGroupLost(ReplicaGroup* group, std::vector<std::shared_ptr<Request>> requests);
  void Monitor();

  const ClusterOptions options_;
  mutable std::mutex mu_;
  std::map<std::string, Member> members_;                  // by worker id; guarded by mu_
  std::vector<std::string> unassigned_;                    // registration order; guarded by mu_
  std::vector<std::shared_ptr<ReplicaGroup>> retired_;     // joined by Monitor; guarded by mu_
  int next_worker_ = 1, next_group_ = 1;                   // guarded by mu_
  Router router_;                                          // guarded by mu_


  kvstore::BlockIndex index_;  // the workers' host-tier blocks, from their heartbeats

  std::atomic<bool> stop_{false};
  std::thread monitor_;
};

}  // namespace tessera::coordinator
