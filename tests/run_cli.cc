#include "tests/run_cli.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "tests/safetensors_writer.h"

namespace tessera::testing {

CliResult RunCli(const std::string& args) {
  const std::string dir = MakeTempDir("cli");
  const std::string cmd = std::string(TESSERA_CLI_PATH) + " " + args + " >" + dir + "/out 2>" + dir + "/err";
  const int status = std::system(("bash -c \"" + cmd + "\"").c_str());
  auto slurp = [](const std::string& p) {
    std::ifstream in(p);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  CliResult r{WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(dir + "/out"), slurp(dir + "/err")};
  std::filesystem::remove_all(dir);
  return r;
}

}  // namespace tessera::testing
