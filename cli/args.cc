#include "cli/args.h"

#include <cctype>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tessera::cli {

bool ParseArgs(int argc, char** argv, const std::set<std::string>& switches, Args* args, std::string* error) {
  if (argc < 2) {
    *error = "missing command (try --help)";
    return false;
  }
  args->command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0) {
      *error = absl::StrCat("unexpected argument '", a, "'");
      return false;
    }
    a = a.substr(2);
    const size_t eq = a.find('=');
    if (eq != std::string::npos) {
      args->flags[a.substr(0, eq)] = a.substr(eq + 1);
    } else if (switches.count(a)) {
      args->flags[a] = std::string(1, '1');  // not = "1": GCC 12 -Wrestrict false positive
    } else if (i + 1 < argc) {
      args->flags[a] = argv[++i];
    } else {
      *error = absl::StrCat("flag --", a, " needs a value");
      return false;
    }
  }
  return true;
}

bool CheckFlags(const Args& args, const std::set<std::string>& allowed, std::string* error) {
  for (const auto& [name, value] : args.flags) {
    if (!allowed.count(name)) {
      *error = absl::StrCat("unknown flag --", name, " for '", args.command, "' (try --help)");
      return false;
    }
  }
  return true;
}

bool ParseIds(const std::string& text, std::vector<int32_t>* ids) {
  if (text.empty()) return false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id)) return false;
    ids->push_back(id);
  }
  return true;
}

bool IntFlag(const Args& args, const std::string& name, int fallback, int min, int* out, std::string* error) {
  auto it = args.flags.find(name);
  if (it == args.flags.end()) {
    *out = fallback;
    return true;
  }
  if (!absl::SimpleAtoi(it->second, out) || *out < min) {
    *error = absl::StrCat("--", name, " must be an integer >= ", min, ", got '", it->second, "'");
    return false;
  }
  return true;
}

}  // namespace tessera::cli
