#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang, ASan and UBSan into build-fuzz/,
# and runs each for SECONDS (default 60), one after another, starting from its seed
# corpus (fuzz/corpus/NAME/) and what earlier runs here found (build-fuzz/corpus/NAME/).
# A crash stops that harness and leaves its input in build-fuzz/crashes/NAME/: copy it
# into fuzz/corpus/NAME/ once fixed, and the regular build's Fuzz.NAME.Corpus test
# replays it from then on. Prints execs, coverage and crashes per harness; exits 1 if
# any harness crashed.
#   usage: scripts/fuzz.sh [SECONDS] [NAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
./scripts/setup.sh
JOBS="${TESSERA_JOBS:-2}"
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTESSERA_FUZZ=ON \
  -DTESSERA_BUILD_TESTS=OFF -DTESSERA_BUILD_BENCH=OFF -DTESSERA_CUDA=OFF >/dev/null
names=("$@")
if ((${#names[@]} == 0)); then
  names=($(sed -n 's/^tessera_fuzzer(\([a-z_]*\) .*/\1/p' fuzz/CMakeLists.txt))
fi
cmake --build build-fuzz -j "$JOBS" --target "${names[@]/%/_fuzzer}"

failed=0
printf '%-16s %12s %10s %8s %8s\n' harness execs exec/s cov crashes
for name in "${names[@]}"; do
  corpus="build-fuzz/corpus/$name" crashes="build-fuzz/crashes/$name" log="build-fuzz/$name.log"
  mkdir -p "$corpus" "$crashes"
  status=0
  # New inputs go to the first corpus folder; the seeds are read, never written.
  ASAN_OPTIONS=detect_leaks=1 "build-fuzz/bin/${name}_fuzzer" "$corpus" "fuzz/corpus/$name" \
    -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$crashes/" >"$log" 2>&1 || status=$?
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)"
  found="$(find "$crashes" -type f | wc -l)"
  printf '%-16s %12s %10s %8s %8s\n' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$found"
  if ((status != 0 || found > 0)); then
    failed=1
    echo "  $name failed (exit $status): see $log and $crashes/"
  fi
done
exit "$failed"
