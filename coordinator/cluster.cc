#include "coordinator/cluster.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace tessera::coordinator {

using Clock = std::chrono::steady_clock;

Cluster::Cluster(const ClusterOptions& options) : options_(options), monitor_([this] { Monitor(); }) {}

Cluster::~Cluster() {
  stop_ = true;
  monitor_.join();
  std::vector<std::shared_ptr<ReplicaGroup>> groups;
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups = DistinctGroupsLocked();
    members_.clear();
    retired_.clear();
  }
  groups.clear();  // joins the group threads outside the lock
}

std::vector<std::shared_ptr<ReplicaGroup>> Cluster::DistinctGroupsLocked() const {
  std::vector<std::shared_ptr<ReplicaGroup>> groups;
  std::set<ReplicaGroup*> seen;
  for (const auto& [id, m] : members_) {
    if (m.group && seen.insert(m.group.get()).second) groups.push_back(m.group);
  }
  return groups;
}

void Cluster::FormGroupsLocked() {
  // Workers asking for the same tensor-parallel degree and naming the same group
  // form groups together, in registration order.
  std::map<std::pair<int, std::string>, std::vector<std::string>> by_shape;
  for (const std::string& id : unassigned_) by_shape[{members_[id].tp, members_[id].group_name}].push_back(id);
  for (auto& [shape, ids] : by_shape) {
    const int tp = shape.first;
    GroupOptions options = options_.group;
    options.tp = tp;
    options.block_index = &index_;
    const size_t size = static_cast<size_t>(tp * options.ep);
    for (size_t first = 0; first + size <= ids.size(); first += size) {
      std::vector<ReplicaGroup::Rank> ranks;
      for (size_t i = first; i < first + size; ++i) {
        ranks.push_back({ids[i], members_[ids[i]].address});
        std::erase(unassigned_, ids[i]);
      }
      auto group = std::make_shared<ReplicaGroup>(
          absl::StrCat("group-", next_group_++), ranks, options,
          [this](ReplicaGroup* g, std::vector<std::shared_ptr<Request>> reqs) { OnGroupLost(g, std::move(reqs)); });
      for (const auto& r : ranks) members_[r.worker_id].group = group;
      group->Start();
      log::Info() << group->id() << " formed from " << size << " worker(s), tp=" << tp;
    }
  }
}

void Cluster::ForgetLocked(const std::string& worker_id) {
  members_.erase(worker_id);
  std::erase(unassigned_, worker_id);
  index_.RemoveWorker(worker_id);  // its blocks can no longer be fetched
}

void Cluster::RetireLocked(const std::shared_ptr<ReplicaGroup>& group) {
  for (const auto& r : group->ranks()) ForgetLocked(r.worker_id);
  retired_.push_back(group);
}

grpc::Status Cluster::Register(grpc::ServerContext*, const v1::internal::RegisterRequest* request,
                               v1::internal::RegisterResponse* response) {
  if (request->address().empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "address is empty");
  if (request->tp() < 0) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "tp must be >= 0");
  if (request->tp() > 0 && options_.check_group_shape) {
    if (absl::Status s = options_.check_group_shape(request->tp(), options_.group.ep); !s.ok()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("--tp ", request->tp(), ": ", s.message()));
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  const std::string id = absl::StrCat("worker-", next_worker_++);
  Member m;
  m.address = request->address();
  m.tp = request->tp() > 0 ? request->tp() : options_.group.tp;
  m.group_name = request->group();
  m.last_heartbeat = Clock::now();
  members_.emplace(id, std::move(m));
  unassigned_.push_back(id);
  log::Info() << id << " registered from " << request->address();
  FormGroupsLocked();
  response->set_worker_id(id);
  response->set_heartbeat_interval_ms(static_cast<int32_t>(options_.heartbeat_interval.count()));
  return grpc::Status::OK;
}

grpc::Status Cluster::Heartbeat(grpc::ServerContext*, const v1::internal::HeartbeatRequest* request,
                                v1::internal::HeartbeatResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(request->worker_id());
  // A worker this coordinator does not know, or one that registered with a coordinator
  // before it under an id this one has given to another worker since: register again
  // (and nothing it reports, such as KV events, is taken as the other worker's).
  if (it == members_.end() || (!request->address().empty() && request->address() != it->second.address)) {
    response->set_known(false);
    return grpc::Status::OK;
  }
  response->set_known(true);
  if (request->has_kv()) {
    const kvstore::BlockIndex::Ack ack = index_.Apply(request->worker_id(), request->kv());
    response->set_kv_acked_seq(ack.acked_seq);
    response->set_kv_resync(ack.resync);
  }
  Member& m = it->second;
  m.last_heartbeat = Clock::now();
  m.kv_bytes_fetched = request->kv_bytes_fetched();
  m.kv_bytes_sent = request->kv_bytes_sent();
  if (request->draining()) m.draining = true;
  if (!m.group) {
    if (m.draining) {  // holds nothing yet: free to go
      ForgetLocked(request->worker_id());
      response->set_release(true);
    }
    return grpc::Status::OK;
  }
  if (m.draining) m.group->Drain();
  if (m.group->state() == ReplicaGroup::State::kReleased) {
    // Every rank of a released group may exit; the others learn it on their heartbeat.
    response->set_release(true);
    std::shared_ptr<ReplicaGroup> group = m.group;
    ForgetLocked(request->worker_id());
    bool last = true;
    for (const auto& r : group->ranks()) last = last && !members_.contains(r.worker_id);
    if (last) retired_.push_back(group);
    log::Info() << request->worker_id() << " drained and released";
  }
  return grpc::Status::OK;
}

void Cluster::Monitor() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<std::shared_ptr<ReplicaGroup>> retired;
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::vector<std::shared_ptr<ReplicaGroup>> lost;
      for (auto it = members_.begin(); it != members_.end();) {
        Member& m = it->second;
        const bool silent = Clock::now() - m.last_heartbeat > options_.heartbeat_timeout;
        if (silent) log::Warning() << it->first << " stopped heartbeating";
        if (m.group && (silent || m.group->state() == ReplicaGroup::State::kDead)) {
          if (silent) m.group->Kill();
          if (std::find(lost.begin(), lost.end(), m.group) == lost.end()) lost.push_back(m.group);
        }
        const std::string id = it->first;
        ++it;
        if (silent && !m.group) ForgetLocked(id);
      }
      for (const auto& g : lost) RetireLocked(g);
      retired.swap(retired_);
    }
    retired.clear();  // joins their threads (which re-route their requests first)
  }
}

void Cluster::OnGroupLost(ReplicaGroup* group, std::vector<std::shared_ptr<Request>> requests) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& g : DistinctGroupsLocked()) {
      if (g.get() == group) RetireLocked(g);  // survivors re-register and regroup
    }
  }
  for (auto& r : requests) {
    if (r->leaving()) {
      r->Leave();
      continue;
    }
    absl::Status s = Route(r);
    if (!s.ok()) r->Fail(absl::UnavailableError(absl::StrCat("lost its workers and no other group can serve: ", s.message())));
  }
}

absl::Status Cluster::Route(std::shared_ptr<Request> request) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ReplicaGroup*> ready;
  for (const auto& g : DistinctGroupsLocked()) {
    if (g->state() == ReplicaGroup::State::kReady) ready.push_back(g.get());
  }
  if (ready.empty()) return absl::UnavailableError("no replica group is ready to serve");
  if (request->kv_retention().bounded()) {
    std::erase_if(ready, [](ReplicaGroup* g) { return !g->RunsKvPolicies(); });
    if (ready.empty()) {
      return absl::FailedPreconditionError(
          "a window or sink-window KV policy runs on CPU workers only, and this server's groups run on GPUs");
    }
  }
  // The request's prefix hashes: the same for every group (one model, one block size),
  // computed once here and carried to the scheduler that admits it.
  request->set_prefix_hashes(ready.front()->PrefixHashes(*request));
  std::vector<GroupLoad> loads;
  for (ReplicaGroup* g : ready) loads.push_back(g->RoutingLoad(*request));
  const int64_t tokens = static_cast<int64_t>(request->prompt().size() + request->generated().size());
  const std::optional<size_t> chosen = router_.Pick(loads, tokens);
  if (!chosen) return absl::InvalidArgumentError("prompt does not fit in the KV cache of any replica group");
  if (!ready[*chosen]->Enqueue(std::move(request))) {
    return absl::UnavailableError("replica group stopped accepting requests");
  }
  return absl::OkStatus();
}

absl::Status Cluster::Drain(const std::string& worker_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = members_.find(worker_id);
  if (it == members_.end()) return absl::NotFoundError(absl::StrCat("no worker ", worker_id));
  it->second.draining = true;
  if (it->second.group) it->second.group->Drain();
  return absl::OkStatus();
}

std::vector<v1::GroupInfo> Cluster::Groups() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<v1::GroupInfo> out;
  for (const auto& g : DistinctGroupsLocked()) out.push_back(g->Info());
  return out;
}

v1::KvIndexInfo Cluster::IndexInfo() const {
  v1::KvIndexInfo info;
  info.set_blocks(index_.num_blocks());
  info.set_workers(index_.num_workers());
  info.set_resyncs(index_.resyncs());
  info.set_entries(index_.num_entries());
  return info;
}

int Cluster::registered_workers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int>(members_.size());
}

std::pair<int64_t, int64_t> Cluster::kv_data_plane_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::pair<int64_t, int64_t> bytes{0, 0};
  for (const auto& [id, m] : members_) {
    bytes.first += m.kv_bytes_fetched;
    bytes.second += m.kv_bytes_sent;
  }
  return bytes;
}

int Cluster::total_waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  int n = 0;
  for (const auto& g : DistinctGroupsLocked()) n += g->num_waiting();
  return n;
}

}  // namespace tessera::coordinator
