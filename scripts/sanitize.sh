#!/usr/bin/env bash
# Builds Tessera with sanitizers (GCC) and runs the tests under them; every process the
# tests start (coordinators, workers) is built the same way.
#   scripts/sanitize.sh address   ASan + UBSan into build-asan/: the unit and multiprocess
#                                 suites (not the kernels-under-qemu test: qemu-user
#                                 cannot host ASan's shadow memory)
#   scripts/sanitize.sh thread    TSan into build-tsan/: the coordinator, scheduler,
#                                 KV store and serving tests. Not clean yet: Debian's
#                                 gRPC, Abseil and OpenSSL are not TSan-built, and their
#                                 internal synchronization shows as races (docs/security.md)
# Extra arguments go to ctest (e.g. -R Scheduler). Any report fails the run. Leaks are
# not checked: the servers end by SIGKILL in the tests, not by an orderly exit.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:?usage: scripts/sanitize.sh address|thread [CTEST_ARGS...]}"
shift
case "$mode" in
  address)
    dir=build-asan
    flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
    tests=(-L "unit|multiprocess" -E "KernelsOnOtherCpus")
    export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    ;;
  thread)
    dir=build-tsan
    flags="-fsanitize=thread"
    tests=(-R "^(SchedulerTest|FairShareTest|RouterTest|RequestTest|BlockIndexTest|KvCacheManagerTest|BlockTransferTest|ServingTest|KvStoreTest|HttpApiTest|SecurityTest|BadInputTest|ChaosTest)\\.")
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp"
    ;;
  *)
    echo "usage: scripts/sanitize.sh address|thread [CTEST_ARGS...]"
    exit 2
    ;;
esac
./scripts/setup.sh
cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_CUDA=OFF \
  -DCMAKE_CXX_FLAGS="$flags -fno-omit-frame-pointer" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$dir" -j "${TESSERA_JOBS:-2}"
# Sanitized code runs several times slower: more time per test.
ctest --test-dir "$dir" --output-on-failure -j "${TESSERA_JOBS:-2}" --timeout 1800 "${tests[@]}" "$@"
