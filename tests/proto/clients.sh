#!/usr/bin/env bash
# The client API from three languages, over TLS with an API key: C++ (`tessera client`),
# Python (stubs generated from proto/ by Debian's protoc + grpc_python_plugin) and
# Node.js (@grpc/grpc-js + @grpc/proto-loader from npm, and server reflection as grpcurl
# uses it). Each generates greedily from the same token ids against a coordinator and a
# worker of this build serving the bundled model; every answer must equal
# `tessera generate` (the engine in one process). A wrong or missing key must get
# UNAUTHENTICATED. Exits 77 (a skip for CTest) when a language's tools are missing.
# usage: clients.sh BIN_DIR
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${1:?usage: $0 BIN_DIR}"
python=/usr/bin/python3  # Debian's, which python3-grpcio installs into
if ! "$python" -c 'import grpc, google.protobuf' 2>/dev/null || ! command -v grpc_python_plugin >/dev/null ||
  ! command -v openssl >/dev/null; then
  echo "python3-grpcio, python3-protobuf, protobuf-compiler-grpc or openssl missing (scripts/setup.sh installs them): skipping"
  exit 77
fi
tools="$root/build/proto-test-tools"
source "$root/tests/npm_tools.sh"
npm_tools "$root/tests/proto" "$tools"

work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- logs"; tail -n 20 "$work"/*.log; exit 1; }
wait_for() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; fail "no $1"; }

model="$root/assets/models/tessera-tiny-llama"
ids=5,6,7,8
max_tokens=12
bash "$root/tests/tls/make_certs.sh" "$work/certs"
ca="$work/certs/ca.pem"
key="client-key-$RANDOM$RANDOM"
echo "$key tenant-a" >"$work/api-keys"

# The client plane on TLS with keys; the workers' plane on its own loopback port.
"$bin/tessera-coordinator" --model "$model" --listen 127.0.0.1:0 --port-file "$work/grpc.port" \
  --internal-listen 127.0.0.1:0 --internal-port-file "$work/internal.port" \
  --tls-cert "$work/certs/server.pem" --tls-key "$work/certs/server.key" --api-key-file "$work/api-keys" \
  2>"$work/coordinator.log" &
pids+=($!)
wait_for "$work/grpc.port"
wait_for "$work/internal.port"
"$bin/tessera-worker" --coordinator "127.0.0.1:$(cat "$work/internal.port")" --threads 1 2>"$work/worker.log" &
pids+=($!)
address="127.0.0.1:$(cat "$work/grpc.port")"

expected="$("$bin/tessera" generate --model "$model" --ids "$ids" --max-new-tokens "$max_tokens" --threads 1 --quiet)"
echo "tessera generate:  $expected"

# C++: the CLI (waits for the group to be ready).
cpp="$(TESSERA_API_KEY="$key" "$bin/tessera" client --address "$address" --tls-ca "$ca" --ids "$ids" \
  --max-tokens "$max_tokens" --temperature 0 --wait-ready 120 2>"$work/cpp.log")" || fail "C++ client: $(cat "$work/cpp.log")"
echo "C++ client:        $cpp"
[ "$cpp" = "$expected" ] || fail "C++ client's tokens differ"

# Python: stubs generated from the repository's .proto files.
mkdir -p "$work/python"
protoc -I "$root/proto" --python_out="$work/python" --grpc_out="$work/python" \
  --plugin=protoc-gen-grpc="$(command -v grpc_python_plugin)" "$root/proto/tessera/v1/tessera.proto"
py="$(TESSERA_API_KEY="$key" "$python" "$root/tests/proto/python_client.py" "$work/python" "$address" "$ca" "$ids" "$max_tokens")" ||
  fail "Python client: $py"
echo "Python client:     $py"
[ "$py" = "$expected FINISH_REASON_LENGTH" ] || fail "Python client's answer differs"
for bad in "wrong-key" ""; do
  out="$(TESSERA_API_KEY="$bad" "$python" "$root/tests/proto/python_client.py" "$work/python" "$address" "$ca" "$ids" 2)" &&
    fail "Python client with key '$bad' was served"
  [ "$out" = "UNAUTHENTICATED" ] || fail "Python client with key '$bad': $out"
done
echo "Python, wrong or no key: UNAUTHENTICATED"

# Node.js: the client from the .proto files, then one from server reflection. By name:
# Node warns on an IP address as the TLS server name (RFC 6066).
cp "$root/tests/proto/node_client.mjs" "$tools/"
node_out="$(TESSERA_ADDRESS="localhost:${address##*:}" TESSERA_CA="$ca" TESSERA_API_KEY="$key" TESSERA_PROTO_DIR="$root/proto" \
  REFLECTION_PROTO="$tools/node_modules/@grpc/reflection/build/proto/grpc/reflection/v1alpha/reflection.proto" \
  node "$tools/node_client.mjs" "$ids" "$max_tokens" 2>&1)" || fail "Node client: $node_out"
echo "$node_out" | sed 's/^/Node client:       /'
grep -qx "generate $expected FINISH_REASON_LENGTH" <<<"$node_out" || fail "Node client's answer differs"
echo "PASS"
