// A server's command line as one table of typed fields: each entry gives the flag's
// parsing, its range, its TESSERA_<NAME> environment fallback (a Kubernetes ConfigMap
// has no shell to expand flags; the command line wins) and its line in --help, so the
// help cannot drift from what is parsed. CLI11 underneath (Debian libcli11-dev).
#pragma once

#include <climits>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tessera {

// Exit status for bad arguments, ids or model folders (a stable contract).
inline constexpr int kUsageExit = 2;

class FlagTable {
 public:
  // `program` names the binary in help and errors; `description` heads --help.
  FlagTable(std::string program, std::string description);
  ~FlagTable();
  FlagTable(const FlagTable&) = delete;
  FlagTable& operator=(const FlagTable&) = delete;

  // Each adds --`name` bound to `field`; the field's value before Parse is the default
  // (shown in --help). `unit` names the value in --help (N, DIR, HOST:PORT, ...).
  void Int(const std::string& name, int* field, const std::string& unit, const std::string& help, int min,
           int max = INT_MAX);
  void String(const std::string& name, std::string* field, const std::string& unit, const std::string& help);
  // A string that must be one of `choices`.
  void Choice(const std::string& name, std::string* field, const std::vector<std::string>& choices,
              const std::string& help);
  // A 0|1 value (true and false accepted too).
  void Bool(const std::string& name, bool* field, const std::string& help);
  // A flag without a value; from the environment "1" or "true" set it.
  void Switch(const std::string& name, bool* field, const std::string& help);
  // Hidden from --help (testing knobs).
  void HideLast();
  // The last added flag must be given.
  void RequireLast();

  // Parses argv (-h/--help, --version included). Returns the status to exit with when
  // the program should stop (0 after help or version, printed on stdout; kUsageExit
  // after a bad flag, with "<program>: <reason>" on stderr), nullopt to go on.
  std::optional<int> Parse(int argc, const char* const* argv);

  std::string Help() const;

  // TESSERA_<NAME> for --name (--kv-memory-mb: TESSERA_KV_MEMORY_MB).
  static std::string EnvironmentName(const std::string& flag);

 private:
  std::string program_;
  std::unique_ptr<CLI::App> app_;
};

// The project's version, as --version prints it.
const char* Version();

}  // namespace tessera
