#include "tests/test_certificates.h"

#include <cstdlib>
#include <stdexcept>

#include "tests/safetensors_writer.h"

namespace tessera::testing {

const std::string& TestCertificates() {
  static const std::string dir = [] {
    const std::string d = MakeTempDir("certs");
    const std::string command = std::string("bash ") + TESSERA_TEST_CERTS_SCRIPT + " " + d;
    if (std::system(command.c_str()) != 0) throw std::runtime_error("cannot make test certificates: " + command);
    return d;
  }();
  return dir;
}

}  // namespace tessera::testing
