#!/usr/bin/env bash
# The per-ISA kernel objects (kernels/CMakeLists.txt) must define no symbol the linker
# could merge across levels (weak / COMDAT / unique: nm types W, V, u): one copy of such
# a function is kept for the whole program, and it could be an AVX-512 copy called on a
# CPU without AVX-512. Arguments: the object files.
set -euo pipefail
status=0
for object in "$@"; do
  shared=$(nm "$object" | awk '$(NF-1) ~ /^[WVu]$/ { print $NF }' | grep -v '^DW.ref.__gxx_personality_v0$' | c++filt || true)
  if [[ -n "$shared" ]]; then
    echo "FAIL: $object defines symbols shared across ISA levels:" >&2
    echo "$shared" >&2
    status=1
  fi
done
echo "checked $# per-ISA objects"
exit $status
