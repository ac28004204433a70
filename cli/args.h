// Command-line parsing for the tessera subcommands: `tessera COMMAND --flag value ...`.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/flags.h"  // kUsageExit

namespace tessera::cli {

struct Args {
  std::string command;
  std::map<std::string, std::string> flags;  // boolean flags map to "1"

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

// Parses "--name value", "--name=value" and the boolean flags in `switches`.
// Returns false with `error` set on malformed input.
bool ParseArgs(int argc, char** argv, const std::set<std::string>& switches, Args* args, std::string* error);

// Fails with `error` naming the flag when any flag is not in `allowed`.
bool CheckFlags(const Args& args, const std::set<std::string>& allowed, std::string* error);

bool ParseIds(const std::string& text, std::vector<int32_t>* ids);

// An integer flag >= min, or `fallback` when absent.
bool IntFlag(const Args& args, const std::string& name, int fallback, int min, int* out, std::string* error);

}  // namespace tessera::cli
