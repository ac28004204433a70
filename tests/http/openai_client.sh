#!/usr/bin/env bash
# The official openai npm client against a coordinator and a worker of this build
# serving the bundled model (tests/http/openai_client.test.mjs). The client is
# installed from the npm registry once into build/http-test-tools; exits 77 (a skip
# for CTest) when node/npm or the registry are missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:?usage: openai_client.sh BIN_DIR}"
tools="$root/build/http-test-tools"
command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm not installed: skipping"; exit 77; }
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9
if ! cmp -s "$root/tests/http/package-lock.json" "$tools/package-lock.json" || [ ! -d "$tools/node_modules/openai" ]; then
  cp "$root/tests/http/package.json" "$root/tests/http/package-lock.json" "$tools/"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm registry unreachable: skipping"; exit 77; }
fi
flock -u 9

work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "no $1; logs:"; cat "$work"/*.log; exit 1; }

"$bin/tessera-coordinator" --model "$root/assets/models/tessera-tiny-llama" --listen 127.0.0.1:0 \
  --port-file "$work/grpc.port" --http-listen 127.0.0.1:0 --http-port-file "$work/http.port" 2>"$work/coordinator.log" &
pids+=($!)
wait_for "$work/grpc.port"
wait_for "$work/http.port"
"$bin/tessera-worker" --coordinator "127.0.0.1:$(cat "$work/grpc.port")" --threads 1 2>"$work/worker.log" &
pids+=($!)
url="http://127.0.0.1:$(cat "$work/http.port")"
for _ in $(seq 1 600); do curl -sf "$url/ready" >/dev/null && break; sleep 0.1; done
# The test file imports "openai" from the tools' node_modules.
cp "$root/tests/http/openai_client.test.mjs" "$tools/"
TESSERA_HTTP_URL="$url/v1" node --test "$tools/openai_client.test.mjs"
