// The autoscaler loop of tier 1: what the chart's HPA or KEDA ScaledObject does to the
// workers' LeaderWorkerSet (docs/deploy.md, "Autoscaling"), run against the
// coordinator's /metrics so the tests can watch groups follow a load without a
// Kubernetes control plane. The decision is the HorizontalPodAutoscaler's algorithm
// (kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale): one proposal
// per metric, the largest wins, bounded by min and max; scaling up is immediate,
// scaling down takes the largest proposal of the stabilization window.
#pragma once

#include <chrono>
#include <deque>
#include <optional>
#include <string>
#include <utility>

namespace tessera::testing {

struct ScalePolicy {
  int min_groups = 1;
  int max_groups = 4;
  double waiting_per_group = 4;  // AverageValue target of tessera:num_requests_waiting
  double kv_usage = 0.9;         // Value target of tessera:kv_cache_usage_perc
  std::chrono::milliseconds scale_down_stabilization{2000};
};

// What one scrape of /metrics says.
struct LoadSample {
  double waiting = 0;   // tessera:num_requests_waiting
  double kv_usage = 0;  // tessera:kv_cache_usage_perc
  int ready_groups = 0;  // the tessera:group_ready series at 1
};

// Reads the Prometheus text exposition; nullopt if a series the policy reads is absent.
std::optional<LoadSample> ParseLoadSample(const std::string& metrics);

class Autoscaler {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Autoscaler(ScalePolicy policy) : policy_(policy) {}

  // The groups the load asks for now, before stabilization.
  int Propose(const LoadSample& load, int current) const;
  // The groups to run after `load` was seen at `now` with `current` groups.
  int Decide(const LoadSample& load, int current, Clock::time_point now);

 private:
  ScalePolicy policy_;
  std::deque<std::pair<Clock::time_point, int>> proposals_;  // within the window
};

}  // namespace tessera::testing
