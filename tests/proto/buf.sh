#!/usr/bin/env bash
# buf (from npm) on the client API, configured by proto/buf.yaml.
#   buf.sh lint      `buf lint`: the STANDARD and COMMENTS rules, exceptions marked and
#                    justified where they are (buf:lint:ignore comments).
#   buf.sh breaking  `buf breaking` against the newest release tag (v*): a v1 client
#                    must keep working. First it proves the check bites: a copy of
#                    proto/ with one field renumbered must be refused.
# Exits 77 (a skip for CTest) when node/npm or the registry are missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/build/proto-test-tools"
source "$root/tests/npm_tools.sh"
npm_tools "$root/tests/proto" "$tools"
buf="$tools/node_modules/.bin/buf"
cd "$root/proto"

case "${1:-}" in
  lint)
    "$buf" lint
    echo "buf lint: clean"
    ;;
  breaking)
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    cp -r . "$work/proto"
    sed -i 's/int32 priority = 9;/int32 priority = 99;/' "$work/proto/tessera/v1/tessera.proto"
    if "$buf" breaking "$work/proto" --against . >"$work/out" 2>&1; then
      echo "FAIL: buf breaking accepted a renumbered field"
      exit 1
    fi
    grep -q 'priority' "$work/out" || { cat "$work/out"; exit 1; }
    echo "buf breaking refuses a renumbered field: $(head -n 1 "$work/out")"
    tag="$(git -C "$root" tag --list 'v*' --sort=-version:refname | head -n 1)"
    if [ -z "$tag" ]; then
      echo "no release tag (v*) yet: nothing released to stay compatible with"
      exit 0
    fi
    "$buf" breaking . --against "$root/.git#tag=$tag,subdir=proto"
    echo "buf breaking against $tag: compatible"
    ;;
  *)
    echo "usage: $0 lint|breaking"
    exit 2
    ;;
esac
