#!/usr/bin/env bash
# Sets up, builds and runs the main job: a local coordinator and two workers serving
# the bundled tessera-tiny-llama (trained on the King James Bible) over gRPC and the
# OpenAI-compatible HTTP API, then one streamed generation from a client so you see
# text appear. Serves until Ctrl-C.
#
#   TESSERA_PORT        gRPC port (default 50051)
#   TESSERA_HTTP_PORT   HTTP port (default 8000)
set -euo pipefail
cd "$(dirname "$0")/.."

# The build's output goes to a log; when it fails, its end is shown, not swallowed.
mkdir -p build
LOG=build/run-build.log
echo "run: installing dependencies and building (log: $LOG)" >&2
if ! ./scripts/build.sh >"$LOG" 2>&1; then
  echo "run: the build failed; the end of $LOG:" >&2
  tail -n 40 "$LOG" >&2
  exit 1
fi
PORT="${TESSERA_PORT:-50051}"
HTTP_PORT="${TESSERA_HTTP_PORT:-8000}"
MODEL=assets/models/tessera-tiny-llama

build/bin/tessera serve --model "$MODEL" --workers 2 --listen "127.0.0.1:$PORT" --http-listen "127.0.0.1:$HTTP_PORT" &
SERVE=$!
stop() { kill -TERM "$SERVE" 2>/dev/null || true; wait "$SERVE" || true; }
trap stop INT TERM

echo "tessera client --prompt 'And God said' --max-tokens 64 --temperature 0.8 --seed 1" >&2
build/bin/tessera client --address "127.0.0.1:$PORT" --prompt "And God said" --max-tokens 64 \
  --temperature 0.8 --seed 1 --wait-ready 120
echo >&2
echo "Serving gRPC on 127.0.0.1:$PORT. Try: build/bin/tessera client --address 127.0.0.1:$PORT --prompt 'The LORD is'" >&2
echo "and the OpenAI API on http://127.0.0.1:$HTTP_PORT/v1. Try:" >&2
echo "  curl http://127.0.0.1:$HTTP_PORT/v1/completions -H 'Content-Type: application/json' \\" >&2
echo "    -d '{\"prompt\": \"The LORD is\", \"max_tokens\": 32}'" >&2
echo "Ctrl-C to stop." >&2
wait "$SERVE"
