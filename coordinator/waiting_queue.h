// WaitingQueue: a replica group's waiting requests, in the order they are admitted.
//
// Priority first: a lower `priority` value goes sooner (vLLM's convention; default 0).
// Within a priority, tenants share by weighted fair queuing: each tenant's virtual time
// is the work of its admitted requests (prompt + max tokens) divided by its weight, and
// the tenant with the least goes next, its own requests in arrival order. A tenant that
// had nothing waiting starts no earlier than the virtual time of the last admission, so
// idling earns no credit, and a flood by one tenant delays another's request by at most
// one admission.
// A preempted request goes back to the front of its tenant's queue.
//
// Not thread-safe: the scheduler guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/request.h"

namespace tessera::coordinator {

class WaitingQueue {
 public:
  void Push(std::shared_ptr<Request> request);
  // A request that ran and was preempted: first of its tenant's at its priority.
  void PushFront(std::shared_ptr<Request> request);

  // The request to admit next; null when empty.
  std::shared_ptr<Request> Next() const;
  // Removes Next() and charges its work to its tenant.
  void PopNext();

  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  // Tenants with a request waiting.
  std::vector<std::string> Tenants() const;
  // Every waiting request, in no particular order.
  void ForEach(const std::function<void(const std::shared_ptr<Request>&)>& visit) const;
  // Removes the requests `leave` is true for.
  void RemoveIf(const std::function<bool(const std::shared_ptr<Request>&)>& leave);
  std::vector<std::shared_ptr<Request>> TakeAll();

 private:
  struct Entry {
    uint64_t arrival;
    std::shared_ptr<Request> request;
  };
  using TenantQueues = std::map<std::string, std::deque<Entry>>;  // by tenant, never empty
  // The tenant of `level` whose front goes next.
  const std::pair<const std::string, std::deque<Entry>>& NextTenant(const TenantQueues& level) const;
  void Add(std::shared_ptr<Request> request, bool front);

  std::map<int32_t, TenantQueues> levels_;  // by priority, lowest first; never empty
  std::map<std::string, double> virtual_time_;  // by tenant
  std::map<std::string, int> waiting_per_tenant_;
  double last_admitted_time_ = 0;  // the admitted tenant's virtual time, before its charge
  uint64_t next_arrival_ = 1;  // preempted requests take 0: older than any arrival
  size_t size_ = 0;
};

}  // namespace tessera::coordinator
