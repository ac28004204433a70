// The one way library and server code writes a log line: "<program>: <message>" on
// stderr (warnings as "<program>: warning: <message>"), each line written whole so
// threads never interleave inside one. The program name is set once in main; servers
// also turn on timestamps, and may pick JSON lines for log collectors
// ({"time", "program", "level", "msg", and the line's fields}).
//
//   log::Info() << group_id << " formed from " << n << " worker(s)";
//   log::Info() << "request finished" << log::Field("id", id) << log::Field("ttft_s", 0.12);
#pragma once

#include <sstream>
#include <type_traits>
#include <string>
#include <utility>
#include <vector>

namespace tessera::log {

enum class Level { kInfo, kWarning };
enum class Format { kText, kJson };

// Names the process in every line (default "tessera").
void SetProgram(std::string program);
// Text (default) or JSON lines; with timestamps (ISO 8601, UTC) or not (default).
void SetFormat(Format format);
void SetTimestamps(bool on);
// A server's lines: timestamped, as text or JSON by `format_name` ("text", "json";
// its --log-format, already checked).
void ForServer(const std::string& format_name);

// A named value of a line: " name=value" in text, a member in JSON.
struct Field {
  template <typename T>
  Field(std::string name, const T& value) : name(std::move(name)) {
    std::ostringstream out;
    out << value;
    text = out.str();
    numeric = std::is_arithmetic_v<T>;
  }
  std::string name;
  std::string text;
  bool numeric;
};

// Collects one line and writes it when destroyed.
class Line {
 public:
  explicit Line(Level level) : level_(level) {}
  ~Line();
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;

  template <typename T>
  Line& operator<<(const T& value) {
    text_ << value;
    return *this;
  }
  Line& operator<<(Field field) {
    fields_.push_back(std::move(field));
    return *this;
  }

 private:
  Level level_;
  std::ostringstream text_;
  std::vector<Field> fields_;
};

inline Line Info() { return Line(Level::kInfo); }
inline Line Warning() { return Line(Level::kWarning); }

}  // namespace tessera::log
