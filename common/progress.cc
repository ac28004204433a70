#include "common/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "absl/strings/str_format.h"
#include "common/log.h"

namespace tessera {
namespace {

constexpr auto kBarInterval = std::chrono::milliseconds(100);
constexpr auto kLineInterval = std::chrono::seconds(2);
constexpr int kBarWidth = 30;

}  // namespace

ByteProgress::ByteProgress(std::string what, Style style) : what_(std::move(what)), style_(style) {
  if (style_ == Style::kAuto) style_ = isatty(STDERR_FILENO) ? Style::kBar : Style::kLines;
}

double ByteProgress::seconds() const {
  return std::chrono::duration<double>((finished_ ? end_ : Clock::now()) - start_).count();
}

std::string ByteProgress::Describe(int64_t done, int64_t total, double seconds) {
  const double gb = static_cast<double>(done) / 1e9, total_gb = static_cast<double>(total) / 1e9;
  const double rate = seconds > 0 ? gb / seconds : 0;
  std::string text = absl::StrFormat("%d%% %.2f/%.2f GB, %.2f GB/s", total > 0 ? static_cast<int>(100 * done / total) : 0,
                                     gb, total_gb, rate);
  if (rate > 0 && total > done) absl::StrAppendFormat(&text, ", %.1f s left", (total_gb - gb) / rate);
  return text;
}

void ByteProgress::Update(int64_t done, int64_t total) {
  if (finished_) return;
  done_ = done;
  if (total > 0 && done >= total) return Finish();
  if (style_ == Style::kQuiet) return;
  const Clock::time_point now = Clock::now();
  if (now - last_shown_ < (style_ == Style::kBar ? Clock::duration(kBarInterval) : Clock::duration(kLineInterval))) return;
  last_shown_ = now;
  const std::string text = Describe(done, total, seconds());
  if (style_ == Style::kLines) {
    log::Info() << what_ << ": " << text;
    return;
  }
  const int filled = total > 0 ? static_cast<int>(kBarWidth * std::min<int64_t>(done, total) / total) : 0;
  std::fprintf(stderr, "\r%s [%s%s] %s\033[K", what_.c_str(), std::string(filled, '#').c_str(),
               std::string(kBarWidth - filled, '.').c_str(), text.c_str());
  std::fflush(stderr);
  bar_drawn_ = true;
}

void ByteProgress::Finish() {
  if (finished_) return;
  finished_ = true;
  end_ = Clock::now();
  if (style_ == Style::kQuiet) return;
  if (bar_drawn_) std::fprintf(stderr, "\r\033[K");
  const double s = seconds();
  log::Info() << absl::StrFormat("%s: %.2f GB in %.2f s (%.2f GB/s)", what_, static_cast<double>(done_) / 1e9, s,
                                 s > 0 ? static_cast<double>(done_) / 1e9 / s : 0.0);
}

}  // namespace tessera
