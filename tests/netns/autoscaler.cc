#include "tests/netns/autoscaler.h"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace tessera::testing {

std::optional<LoadSample> ParseLoadSample(const std::string& metrics) {
  LoadSample s;
  bool waiting = false, kv = false;
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    const std::string series = line.substr(0, space);
    const double value = std::strtod(line.c_str() + space + 1, nullptr);
    // Series carry labels ({model_name="..."}): match the name up to them.
    const auto named = [&](const std::string& name) {
      return series.compare(0, name.size(), name) == 0 && (series.size() == name.size() || series[name.size()] == '{');
    };
    if (named("tessera:num_requests_waiting")) {
      s.waiting = value;
      waiting = true;
    } else if (named("tessera:kv_cache_usage_perc")) {
      s.kv_usage = value;
      kv = true;
    } else if (named("tessera:group_ready")) {
      s.ready_groups += value == 1;
    }
  }
  if (!waiting || !kv) return std::nullopt;
  return s;
}

int Autoscaler::Propose(const LoadSample& load, int current) const {
  // AverageValue: the groups that bring the waiting requests per group to the target.
  const int by_waiting = static_cast<int>(std::ceil(load.waiting / policy_.waiting_per_group));
  // Value: scale the current groups by how far the usage is from its target.
  const int by_kv = static_cast<int>(std::ceil(current * load.kv_usage / policy_.kv_usage));
  return std::clamp(std::max(by_waiting, by_kv), policy_.min_groups, policy_.max_groups);
}

int Autoscaler::Decide(const LoadSample& load, int current, Clock::time_point now) {
  const int proposal = Propose(load, current);
  proposals_.emplace_back(now, proposal);
  while (proposals_.front().first < now - policy_.scale_down_stabilization) proposals_.pop_front();
  if (proposal >= current) return proposal;
  int highest = proposal;  // down only as far as the whole window allows
  for (const auto& [when, p] : proposals_) highest = std::max(highest, p);
  return std::min(highest, current);
}

}  // namespace tessera::testing
