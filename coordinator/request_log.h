// RequestLog: the coordinator's log of its traffic. One line per finished request (id,
// finish reason, tokens in / out / cached, time to first token (-1: none), duration), and every
// `interval` a stats line like vLLM's (prompt and generation throughput, running and
// waiting requests, KV usage, prefix-cache hit rate) while there is traffic. Lines go
// through common/log, so --log-format json gives them as JSON fields.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>

#include "coordinator/request.h"
#include "tessera/v1/tessera.pb.h"

namespace tessera::coordinator {

class RequestLog final : public RequestObserver {
 public:
  // The thread that writes the stats lines, reading `server_info` for each; it must
  // end (the jthread's destruction) before what `server_info` reads goes away. An
  // interval of zero starts none.
  std::jthread StartStats(std::chrono::seconds interval, std::function<v1::ServerInfo()> server_info);

  void OnQueued(double) override {}
  void OnFirstToken(double) override;
  void OnNextToken(double) override;
  void OnFinished(const RequestSummary& summary) override;

 private:
  void StatsLine(const v1::ServerInfo& info, double seconds);

  std::atomic<int64_t> generated_{0};  // tokens since the last stats line
  std::atomic<int64_t> prompt_{0};     // prompt tokens of requests finished since then
  int64_t last_lookups_ = 0, last_hits_ = 0;  // the stats thread's
};

}  // namespace tessera::coordinator
