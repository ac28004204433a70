#include "common/log.h"

#include <unistd.h>

#include <chrono>
#include <mutex>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace tessera::log {
namespace {

struct Settings {
  std::mutex mu;
  std::string program = "tessera";
  Format format = Format::kText;
  bool timestamps = false;
};

Settings& Current() {
  static Settings settings;
  return settings;
}

std::string Now() { return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()); }

}  // namespace

void SetProgram(std::string program) {
  std::lock_guard lock(Current().mu);
  Current().program = std::move(program);
}

void SetFormat(Format format) {
  std::lock_guard lock(Current().mu);
  Current().format = format;
}

void SetTimestamps(bool on) {
  std::lock_guard lock(Current().mu);
  Current().timestamps = on;
}

void ForServer(const std::string& format_name) {
  SetFormat(format_name == "json" ? Format::kJson : Format::kText);
  SetTimestamps(true);
}

Line::~Line() {
  std::string program;
  Format format;
  bool timestamps;
  {
    Settings& s = Current();
    std::lock_guard lock(s.mu);
    program = s.program;
    format = s.format;
    timestamps = s.timestamps;
  }
  std::string line;
  if (format == Format::kJson) {
    nlohmann::ordered_json j = {{"time", Now()},
                                {"program", program},
                                {"level", level_ == Level::kWarning ? "warning" : "info"},
                                {"msg", text_.str()}};
    for (const Field& f : fields_) {
      nlohmann::json value = f.numeric ? nlohmann::json::parse(f.text, nullptr, false) : nlohmann::json();
      j[f.name] = value.is_discarded() || value.is_null() ? nlohmann::json(f.text) : value;
    }
    line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  } else {
    if (timestamps) line = Now() + " ";
    line += program;
    line += level_ == Level::kWarning ? ": warning: " : ": ";
    line += text_.str();
    for (const Field& f : fields_) line += " " + f.name + "=" + f.text;
  }
  line += '\n';
  // One write(2) per line: whole lines even across processes sharing the stream.
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

}  // namespace tessera::log
