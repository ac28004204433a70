#!/usr/bin/env bash
# Runs the kernel and golden tests as CPUs without AVX-512 would, under QEMU's user-mode
# emulation (Debian's qemu-user; TCG emulates up to AVX2): an AMD EPYC Rome (Zen 2:
# AVX2, FMA, F16C) must select the avx2 kernels, a baseline x86-64 CPU the portable
# ones, and on both every test passes with no illegal instruction. This is what
# catches code that needs the build machine's ISA. Skipped (77) without qemu-x86_64.
# Arguments: the kernels_test and golden_test binaries.
set -uo pipefail
if ! command -v qemu-x86_64 >/dev/null; then
  echo "skipped: qemu-x86_64 is not installed (scripts/setup.sh installs qemu-user)"
  exit 77
fi
status=0
for cpu_and_level in "EPYC-Rome avx2" "qemu64 portable"; do
  read -r cpu level <<<"$cpu_and_level"
  for test_binary in "$@"; do
    out=$(qemu-x86_64 -cpu "$cpu" "$test_binary" --gtest_brief=1 2>&1)
    rc=$?
    if [[ $rc -ne 0 ]]; then
      echo "FAIL: $(basename "$test_binary") as $cpu exited $rc:" >&2
      echo "$out" | tail -n 30 >&2
      status=1
    elif ! grep -q "it runs up to $level)" <<<"$out"; then
      echo "FAIL: $(basename "$test_binary") as $cpu did not select the $level kernels:" >&2
      echo "$out" | tail -n 10 >&2
      status=1
    else
      echo "ok: $(basename "$test_binary") as $cpu ($level): $(grep -E '^\[  PASSED' <<<"$out")"
    fi
  done
done
exit $status
