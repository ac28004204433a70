// Progress of a long job counted in bytes (loading a model's weights): on a terminal a
// bar redrawn in place, otherwise a log line at most every few seconds, and always a
// closing line with the total and the rate. Quiet prints nothing.
//
//   ByteProgress progress("loading weights", ByteProgress::Style::kAuto);
//   ... progress.Update(done, total);   (from one thread)
//   progress.Finish();                  "loaded 2.20 GB in 0.61 s (3.60 GB/s)"
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tessera {

class ByteProgress {
 public:
  enum class Style {
    kAuto,   // a bar when stderr is a terminal, log lines otherwise
    kBar,
    kLines,
    kQuiet,
  };

  ByteProgress(std::string what, Style style);

  // Reaching the total finishes (so work done after it, such as allocating a KV pool,
  // is not counted).
  void Update(int64_t done, int64_t total);
  // The closing line (a log line in every style but quiet); once.
  void Finish();

  // Since the start, until finished.
  double seconds() const;
  int64_t bytes() const { return done_; }

  // One progress text: "45% 1.00/2.20 GB, 3.40 GB/s, 0.4 s left".
  static std::string Describe(int64_t done, int64_t total, double seconds);

 private:
  using Clock = std::chrono::steady_clock;

  const std::string what_;
  Style style_;
  const Clock::time_point start_ = Clock::now();
  Clock::time_point last_shown_ = start_;
  int64_t done_ = 0;
  bool bar_drawn_ = false;
  bool finished_ = false;
  Clock::time_point end_;
};

}  // namespace tessera
