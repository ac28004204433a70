#!/usr/bin/env bash
# Installs everything Tessera needs to build and test, from Debian 12's packages.
# Idempotent: when every package is already installed it returns in about a second.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libabsl-dev
  libgrpc++-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev
  libpcre2-dev libutf8proc-dev zlib1g-dev libssl-dev libcurl4-openssl-dev libxxhash-dev
  libgloo-dev libboost-dev prometheus-cpp-dev
  python3 python3-grpcio python3-protobuf python3-jinja2
  iproute2 curl openssl
)
# Node.js and npm run the deployment tests' tools (helm, the Kubernetes schemas); a
# machine that has them from elsewhere (NodeSource) keeps its own. Image builds, which
# run no tests, skip them (TESSERA_SETUP_NO_TEST_TOOLS=1).
if [[ -z "${TESSERA_SETUP_NO_TEST_TOOLS:-}" ]] && ! command -v npm >/dev/null; then PACKAGES+=(nodejs npm); fi
# qemu-user runs the kernel tests as CPUs without AVX-512 (tests/other_cpus_test.sh);
# clang and its libFuzzer runtime build the fuzzers (scripts/fuzz.sh).
if [[ -z "${TESSERA_SETUP_NO_TEST_TOOLS:-}" ]]; then PACKAGES+=(qemu-user clang-14 libclang-rt-14-dev); fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
