#!/usr/bin/env bash
# Sets up, builds and runs every test (CPU only; GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh
ctest --test-dir build --output-on-failure -j "${TESSERA_JOBS:-2}"
