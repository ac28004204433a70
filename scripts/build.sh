#!/usr/bin/env bash
# Installs dependencies (scripts/setup.sh), configures and builds Tessera into build/.
# Extra arguments go to CMake, e.g. scripts/build.sh -DTESSERA_NATIVE=OFF
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/setup.sh
# Two jobs: the CI machines have two cores and 24 GiB; more jobs only thrash.
JOBS="${TESSERA_JOBS:-2}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j "$JOBS"
