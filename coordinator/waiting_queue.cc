#include "coordinator/waiting_queue.h"

#include <algorithm>

namespace tessera::coordinator {

void WaitingQueue::Push(std::shared_ptr<Request> request) { Add(std::move(request), /*front=*/false); }

void WaitingQueue::PushFront(std::shared_ptr<Request> request) { Add(std::move(request), /*front=*/true); }

void WaitingQueue::Add(std::shared_ptr<Request> request, bool front) {
  const std::string& tenant = request->tenant();
  if (waiting_per_tenant_[tenant]++ == 0) {
    // Back from idle: no credit for the time it had nothing waiting.
    virtual_time_[tenant] = std::max(virtual_time_[tenant], last_admitted_time_);
  }
  std::deque<Entry>& queue = levels_[request->priority()][tenant];
  if (front) {
    queue.push_front({0, std::move(request)});
  } else {
    queue.push_back({next_arrival_++, std::move(request)});
  }
  ++size_;
}

const std::pair<const std::string, std::deque<WaitingQueue::Entry>>& WaitingQueue::NextTenant(
    const TenantQueues& level) const {
  const std::pair<const std::string, std::deque<Entry>>* best = nullptr;
  double best_time = 0;
  for (const auto& tenant_queue : level) {
    const auto it = virtual_time_.find(tenant_queue.first);
    const double time = it == virtual_time_.end() ? 0 : it->second;
    if (best == nullptr || time < best_time ||
        (time == best_time && tenant_queue.second.front().arrival < best->second.front().arrival)) {
      best = &tenant_queue;
      best_time = time;
    }
  }
  return *best;
}

std::shared_ptr<Request> WaitingQueue::Next() const {
  if (levels_.empty()) return nullptr;
  return NextTenant(levels_.begin()->second).second.front().request;
}

void WaitingQueue::PopNext() {
  if (levels_.empty()) return;
  TenantQueues& level = levels_.begin()->second;
  const std::string tenant = NextTenant(level).first;
  std::deque<Entry>& queue = level[tenant];
  const std::shared_ptr<Request> request = std::move(queue.front().request);
  queue.pop_front();
  if (queue.empty()) level.erase(tenant);
  if (level.empty()) levels_.erase(levels_.begin());
  --waiting_per_tenant_[tenant];
  --size_;
  last_admitted_time_ = virtual_time_[tenant];
  virtual_time_[tenant] += static_cast<double>(std::max<int64_t>(1, request->remaining_work())) /
                           std::max(1e-9, request->share_weight());
}

std::vector<std::string> WaitingQueue::Tenants() const {
  std::vector<std::string> tenants;
  for (const auto& [tenant, count] : waiting_per_tenant_) {
    if (count > 0) tenants.push_back(tenant);
  }
  return tenants;
}

void WaitingQueue::ForEach(const std::function<void(const std::shared_ptr<Request>&)>& visit) const {
  for (const auto& [priority, level] : levels_) {
    for (const auto& [tenant, queue] : level) {
      for (const Entry& e : queue) visit(e.request);
    }
  }
}

void WaitingQueue::RemoveIf(const std::function<bool(const std::shared_ptr<Request>&)>& leave) {
  for (auto level = levels_.begin(); level != levels_.end();) {
    for (auto tenant = level->second.begin(); tenant != level->second.end();) {
      std::deque<Entry>& queue = tenant->second;
      const size_t before = queue.size();
      std::erase_if(queue, [&](const Entry& e) { return leave(e.request); });
      waiting_per_tenant_[tenant->first] -= static_cast<int>(before - queue.size());
      size_ -= before - queue.size();
      tenant = queue.empty() ? level->second.erase(tenant) : std::next(tenant);
    }
    level = level->second.empty() ? levels_.erase(level) : std::next(level);
  }
}

std::vector<std::shared_ptr<Request>> WaitingQueue::TakeAll() {
  std::vector<std::shared_ptr<Request>> all;
  ForEach([&](const std::shared_ptr<Request>& r) { all.push_back(r); });
  levels_.clear();
  waiting_per_tenant_.clear();
  size_ = 0;
  return all;
}

}  // namespace tessera::coordinator
