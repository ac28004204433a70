#include "coordinator/request_log.h"

#include <cmath>

#include "common/log.h"
#include "coordinator/metrics.h"

namespace tessera::coordinator {
namespace {

// `value` rounded to `decimals` digits after the point (a log field prints it short).
double Round(double value, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(value * scale) / scale;
}

}  // namespace

std::jthread RequestLog::StartStats(std::chrono::seconds interval, std::function<v1::ServerInfo()> server_info) {
  if (interval.count() <= 0) return {};
  return std::jthread([this, interval, server_info = std::move(server_info)](std::stop_token stop) {
    auto last = std::chrono::steady_clock::now();
    while (true) {
      for (auto until = last + interval; std::chrono::steady_clock::now() < until;) {
        if (stop.stop_requested()) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      const auto now = std::chrono::steady_clock::now();
      StatsLine(server_info(), std::chrono::duration<double>(now - last).count());
      last = now;
    }
  });
}

void RequestLog::OnFirstToken(double) { ++generated_; }
void RequestLog::OnNextToken(double) { ++generated_; }

void RequestLog::OnFinished(const RequestSummary& s) {
  prompt_ += s.prompt_tokens;
  log::Info() << "request finished" << log::Field("id", s.id) << log::Field("finish", FinishReasonName(s.reason))
              << log::Field("prompt_tokens", s.prompt_tokens) << log::Field("completion_tokens", s.completion_tokens)
              << log::Field("cached_tokens", s.cached_tokens)
              << log::Field("ttft_s", Round(s.time_to_first_token, 3))
              << log::Field("duration_s", Round(s.seconds, 3));
}

void RequestLog::StatsLine(const v1::ServerInfo& info, double seconds) {
  const GroupTotals t = GroupTotals::Of(info);
  const int64_t generated = generated_.exchange(0), prompt = prompt_.exchange(0);
  const int64_t new_lookups = t.lookups - last_lookups_, new_hits = t.hits - last_hits_;
  last_lookups_ = t.lookups;
  last_hits_ = t.hits;
  if (generated == 0 && prompt == 0 && t.running == 0 && t.waiting == 0) return;  // idle: say nothing
  log::Info() << "stats" << log::Field("prompt_tok_per_s", Round(prompt / seconds, 1))
              << log::Field("generation_tok_per_s", Round(generated / seconds, 1)) << log::Field("running", t.running)
              << log::Field("waiting", t.waiting)
              << log::Field("kv_usage_pct", Round(100.0 * t.kv_usage(), 1))
              << log::Field("prefix_hit_pct", Round(new_lookups > 0 ? 100.0 * new_hits / new_lookups : 0.0, 1));
}

}  // namespace tessera::coordinator
