#include "coordinator/cluster.h"

#include <grpcpp/grpcpp.h>

#include <iostream>

#include "absl/strings/str_cat.h"

namespace tessera::coordinator {

using Clock = std::chrono::steady_clock;

Cluster::Cluster(const ClusterOptions& options) : options_(options), monitor_([this] { Monitor(); }) {}

Cluster::~Cluster() {
  stop_ = true;
  monitor_.join();
  std::map<std::string, Member> members;
  {
    std::lock_guard<std::mutex> lock(mu_);
    members.swap(members_);
  }
  members.clear();  // joins the group threads outside the lock
}

grpc::Status Cluster::Register(grpc::ServerContext*, const v1::internal::RegisterRequest* request,
                               v1::internal::RegisterResponse* response) {
  if (request->address().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "address is empty");
  std::lock_guard<std::mutex> lock(mu_);
  const int n = next_id_++;
  Member m;
  m.worker_id = absl::StrCat("worker-", n);
  m.last_heartbeat = Clock::now();
  m.group = std::make_unique<ReplicaGroup>(
      absl::StrCat("group-", n), m.worker_id, request->address(), options_.group,
      [this](ReplicaGroup* g, std::vector<std::shared_ptr<Request>> reqs) { OnGroupLost(g, std::move(reqs)); });
  m.group->Start();
  std::cerr << "tessera-coordinator: " << m.worker_id << " registered from " << request->address() << "\n";
  response->set_worker_id(m.worker_id);
  response->set_heartbeat_interval_ms(static_cast<int32_t>(options_.heartbeat_interval.count()));
  members_.emplace(m.worker_id, std::move(m));
  return grpc::Status::OK;
}

grpc::Status Cluster::Heartbeat(grpc::ServerContext*, const v1::internal::HeartbeatRequest* request,
                                v1::internal::HeartbeatResponse* response) {
  std::unique_ptr<ReplicaGroup> released;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = members_.find(request->worker_id());
    if (it == members_.end()) {
      response->set_known(false);
      return grpc::Status::OK;
    }
    response->set_known(true);
    it->second.last_heartbeat = Clock::now();
    if (request->draining()) it->second.group->Drain();
    if (it->second.group->state() == ReplicaGroup::State::kReleased) {
      response->set_release(true);
      released = std::move(it->second.group);
      members_.erase(it);
      std::cerr << "tessera-coordinator: " << request->worker_id() << " drained and released\n";
    }
  }
  return grpc::Status::OK;  // `released` joins its thread here, outside the lock
}

void Cluster::Monitor() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<std::unique_ptr<ReplicaGroup>> dead;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = members_.begin(); it != members_.end();) {
        const bool silent = Clock::now() - it->second.last_heartbeat > options_.heartbeat_timeout;
        if (silent) {
          std::cerr << "tessera-coordinator: " << it->first << " stopped heartbeating\n";
          it->second.group->Kill();
        }
        if (silent || it->second.group->state() == ReplicaGroup::State::kDead) {
          dead.push_back(std::move(it->second.group));
          it = members_.erase(it);
        } else {
          ++it;
        }
      }
      for (auto& g : retired_) dead.push_back(std::move(g));
      retired_.clear();
    }
    dead.clear();  // joins their threads (which re-route their requests first)
  }
}

void Cluster::OnGroupLost(ReplicaGroup* group, std::vector<std::shared_ptr<Request>> requests) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = members_.find(group->worker_id());
    if (it != members_.end() && it->second.group.get() == group) {
      retired_.push_back(std::move(it->second.group));
      members_.erase(it);
    }
  }
  for (auto& r : requests) {
    if (r->aborted()) {
      r->FinishAborted();
      continue;
    }
    absl::Status s = Route(r);
    if (!s.ok()) r->Fail(absl::UnavailableError(absl::StrCat("lost its worker and no other group can serve: ", s.message())));
  }
}

absl::Status Cluster::Route(std::shared_ptr<Request> request) {
  std::lock_guard<std::mutex> lock(mu_);
  ReplicaGroup* best = nullptr;
  int64_t best_work = 0;
  bool any_ready = false;
  for (auto& [id, m] : members_) {
    ReplicaGroup* g = m.group.get();
    if (g == nullptr || g->state() != ReplicaGroup::State::kReady) continue;
    any_ready = true;
    const int64_t needed = static_cast<int64_t>(request->prompt().size() + request->generated().size()) + 1;
    if (needed > g->max_sequence_tokens()) continue;
    const int64_t work = g->outstanding_work();
    if (best == nullptr || work < best_work) {
      best = g;
      best_work = work;
    }
  }
  if (best == nullptr) {
    if (any_ready) return absl::InvalidArgumentError("prompt does not fit in the KV cache of any replica group");
    return absl::UnavailableError("no replica group is ready to serve");
  }
  if (!best->Enqueue(std::move(request))) return absl::UnavailableError("replica group stopped accepting requests");
  return absl::OkStatus();
}

absl::Status Cluster::Drain(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(worker_id);
  if (it == members_.end()) return absl::NotFoundError(absl::StrCat("no worker ", worker_id));
  it->second.group->Drain();
  return absl::OkStatus();
}

std::vector<v1::GroupInfo> Cluster::Groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::GroupInfo> out;
  for (const auto& [id, m] : members_) {
    if (m.group) out.push_back(m.group->Info());
  }
  return out;
}

int Cluster::total_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& [id, m] : members_) {
    if (m.group) n += m.group->Info().waiting_requests();
  }
  return n;
}

}  // namespace tessera::coordinator
