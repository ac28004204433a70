// The one way library and server code writes a log line: "<program>: <message>" on
// stderr (warnings as "<program>: warning: <message>"), each line written whole so
// threads never interleave inside one. The program name is set once in main.
//
//   log::Info() << group_id << " formed from " << n << " worker(s)";
#pragma once

#include <sstream>
#include <string>

namespace tessera::log {

enum class Level { kInfo, kWarning };

// Names the process in every line (default "tessera").
void SetProgram(std::string program);

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

 private:
  Level level_;
  std::ostringstream text_;
};

inline Line Info() { return Line(Level::kInfo); }
inline Line Warning() { return Line(Level::kWarning); }

}  // namespace tessera::log
