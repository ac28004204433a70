// The tessera CLI as users and other checks run it: a real process, its output kept.
#pragma once

#include <string>

namespace tessera::testing {

struct CliResult {
  int exit_code;  // -1 if it did not exit normally
  std::string stdout_text;
  std::string stderr_text;
};

// Runs `tessera ARGS` (ARGS as a shell would split them) and waits for it.
CliResult RunCli(const std::string& args);

}  // namespace tessera::testing
