# Sourced by the HTTP API's script tests: starts a coordinator (with the HTTP API) and
# a worker of this build serving the bundled model, stops them on exit, and sets URL
# (http://127.0.0.1:PORT) once a replica group is ready. $1 is the build's bin folder;
# the arguments after it go to the coordinator.
bin="${1:?usage: $0 BIN_DIR [COORDINATOR_FLAG...]}"
shift
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_for() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.05; done; echo "no $1; logs:"; cat "$work"/*.log; exit 1; }

"$bin/tessera-coordinator" --model "$root/assets/models/tessera-tiny-llama" --listen 127.0.0.1:0 \
  --port-file "$work/grpc.port" --http-listen 127.0.0.1:0 --http-port-file "$work/http.port" "$@" \
  2>"$work/coordinator.log" &
pids+=($!)
wait_for "$work/grpc.port"
wait_for "$work/http.port"
"$bin/tessera-worker" --coordinator "127.0.0.1:$(cat "$work/grpc.port")" --threads 1 2>"$work/worker.log" &
pids+=($!)
URL="http://127.0.0.1:$(cat "$work/http.port")"
for _ in $(seq 1 600); do curl -sf "$URL/ready" >/dev/null && break; sleep 0.1; done
