// Command-line parsing for the tessera subcommands: `tessera COMMAND --flag value ...`.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace tessera::cli {

// Exit status for bad arguments, ids or model folders (a stable contract).
inline constexpr int kUsageError = 2;

struct Args {
  std::string command;
  std::map<std::string, std::string> flags;  // boolean flags map to "1"

  bool Has(const std::string& name) const { return flags.count(name) > 0; }
};

// Parses "--name value", "--name=value" and the boolean flags in `switches`.
// Returns false with `error` set on malformed input.
bool ParseArgs(int argc, char** argv, const std::set<std::string>& switches, Args* args, std::string* error);

// The same for a program without subcommands: flags start at argv[1] and
// args->command is set to `program`.
bool ParseProgramArgs(int argc, char** argv, const char* program, const std::set<std::string>& switches, Args* args,
                      std::string* error);

// Fails with `error` naming the flag when any flag is not in `allowed`.
bool CheckFlags(const Args& args, const std::set<std::string>& allowed, std::string* error);

// The servers' flags may also come from the environment (a Kubernetes ConfigMap, with
// no shell to expand them): each flag in `allowed` missing from the command line is
// read from TESSERA_<NAME> (--kv-memory-mb: TESSERA_KV_MEMORY_MB). A switch is set by
// "1" or "true". The command line wins.
void FlagsFromEnvironment(const std::set<std::string>& allowed, const std::set<std::string>& switches, Args* args);
// The environment variable FlagsFromEnvironment reads for `flag`.
std::string FlagEnvironmentName(const std::string& flag);

bool ParseIds(const std::string& text, std::vector<int32_t>* ids);

// An integer flag >= min, or `fallback` when absent.
bool IntFlag(const Args& args, const std::string& name, int fallback, int min, int* out, std::string* error);

}  // namespace tessera::cli
