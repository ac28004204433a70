// ServingMetrics: what GET /metrics exposes, in Prometheus' text format, with vLLM's
// names under a `tessera:` prefix and a `model_name` label (docs/http-api.md lists
// them). Requests report their milestones as they run (RequestObserver: token and
// request counters, latency histograms); the cluster's state (queues, KV blocks,
// prefix cache, groups, workers) is read from GetServerInfo's answer at each scrape.
// prometheus-cpp (Debian prometheus-cpp-dev) keeps the metrics and writes the text.
#pragma once

#include <memory>
#include <string>

#include "coordinator/request.h"
#include "tessera/v1/tessera.pb.h"

namespace prometheus {
class Registry;
class Counter;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace tessera::coordinator {

// The replica groups' state summed, as the metrics and the stats log line show it.
struct GroupTotals {
  int64_t running = 0, waiting = 0, total_blocks = 0, free_blocks = 0, lookups = 0, hits = 0, preemptions = 0;
  static GroupTotals Of(const v1::ServerInfo& info);
  double kv_usage() const {  // share of the KV blocks in use, 0 to 1
    return total_blocks > 0 ? 1.0 - static_cast<double>(free_blocks) / static_cast<double>(total_blocks) : 0.0;
  }
};

class ServingMetrics final : public RequestObserver {
 public:
  explicit ServingMetrics(std::string model_name);
  ~ServingMetrics() override;

  void OnQueued(double seconds) override;
  void OnFirstToken(double seconds) override;
  void OnNextToken(double seconds) override;
  void OnFinished(const RequestSummary& summary) override;

  // The text exposition of every metric, the cluster's from `info`.
  std::string Scrape(const v1::ServerInfo& info) const;

 private:
  const std::string model_name_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Family<prometheus::Counter>* success_;  // by finished_reason
  prometheus::Histogram* queue_time_;
  prometheus::Histogram* time_to_first_token_;
  prometheus::Histogram* inter_token_latency_;
  prometheus::Histogram* e2e_latency_;
};

}  // namespace tessera::coordinator
