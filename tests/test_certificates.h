// Certificates for the TLS tests, made once per test process by tests/tls/make_certs.sh
// (Debian's openssl) in a temporary folder: see the script for what each file is.
#pragma once

#include <string>

namespace tessera::testing {

// The folder holding ca.pem, server.pem/.key, node.pem/.key, rogue-ca.pem and
// rogue.pem/.key; throws when openssl fails.
const std::string& TestCertificates();

}  // namespace tessera::testing
