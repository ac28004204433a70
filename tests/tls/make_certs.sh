#!/usr/bin/env bash
# Makes the certificates the TLS tests use, in DIR (Debian's openssl):
#   ca.pem            the CA of both planes in the tests
#   server.pem/.key   the client plane's server certificate (127.0.0.1, localhost)
#   node.pem/.key     an internal-plane certificate (127.0.0.1, localhost, tessera-internal)
#   rogue-ca.pem      another CA, and rogue.pem/.key signed by it (same names): a process
#                     that must be refused
# Short-lived (2 days), EC P-256. EXTRA_SAN adds names to the leaves (e.g. "IP:10.77.2.10",
# a container's address).
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
san="subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:tessera-internal${EXTRA_SAN:+,$EXTRA_SAN}"
ca() {  # NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
    -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
leaf() {  # NAME CA
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=$1" \
    -CA "$2.pem" -CAkey "$2.key" -addext "$san" -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$1.key" -out "$1.pem" 2>/dev/null
}
ca ca
ca rogue-ca
leaf server ca
leaf node ca
leaf rogue rogue-ca
