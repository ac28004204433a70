#!/usr/bin/env bash
# Sets up, builds and runs every test (CPU only; GPU tests skip without a GPU).
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh
ctest --test-dir build --output-on-failure -j "${TESSERA_JOBS:-2}"
# Each fuzzer for a short smoke (clang build in build-fuzz/); scripts/fuzz.sh SECONDS
# for a real run. TESSERA_FUZZ_SECONDS=0 skips it.
if [[ "${TESSERA_FUZZ_SECONDS:-10}" != 0 ]]; then ./scripts/fuzz.sh "${TESSERA_FUZZ_SECONDS:-10}"; fi
