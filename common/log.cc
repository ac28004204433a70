#include "common/log.h"

#include <unistd.h>

#include <mutex>

namespace tessera::log {
namespace {

std::mutex& ProgramMutex() {
  static std::mutex mutex;
  return mutex;
}

std::string& ProgramName() {
  static std::string name = "tessera";
  return name;
}

}  // namespace

void SetProgram(std::string program) {
  std::lock_guard lock(ProgramMutex());
  ProgramName() = std::move(program);
}

Line::~Line() {
  std::string line;
  {
    std::lock_guard lock(ProgramMutex());
    line = ProgramName();
  }
  line += level_ == Level::kWarning ? ": warning: " : ": ";
  line += text_.str();
  line += '\n';
  // One write(2) per line: whole lines even across processes sharing the stream.
  for (size_t done = 0; done < line.size();) {
    const ssize_t n = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
}

}  // namespace tessera::log
