#!/usr/bin/env bash
# Fair share between tenants: one API key keeps FLOOD requests in the server at all
# times (a closed loop of FLOOD clients) while another sends TRICKLE requests one at a
# time; a group runs at most MAX_RUNNING at once, so the flood always has a queue. Reports the trickling tenant's
# TTFT alone, under the flood as a second tenant (weighted fair queuing:
# docs/serving.md), and under the same flood when both send with one key (one tenant:
# first come, first served), all in the same run. Prints a markdown table.
#
#   bench/fair_share_bench.sh [MODEL_DIR]   (default: the bundled tessera-tiny-llama)
#   env: FLOOD=200 TRICKLE=10 INPUT=32 OUTPUT=64 MAX_RUNNING=16 WORKERS=1
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
bin="$root/build/bin"
for b in tessera-bench tessera-coordinator tessera-worker; do [ -x "$bin/$b" ] || "$root/scripts/build.sh"; done
FLOOD=${FLOOD:-200} TRICKLE=${TRICKLE:-10} INPUT=${INPUT:-32} OUTPUT=${OUTPUT:-64} MAX_RUNNING=${MAX_RUNNING:-16}
WORKERS=${WORKERS:-1}
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
printf 'flood-key tenant-a\ntrickle-key tenant-b\n' >"$work/keys"

"$bin/tessera-coordinator" --model "$model" --listen 127.0.0.1:0 --port-file "$work/port" \
  --api-key-file "$work/keys" --max-queue 100000 --max-running "$MAX_RUNNING" 2>"$work/coordinator.log" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
address="127.0.0.1:$(cat "$work/port")"
for _ in $(seq 1 "$WORKERS"); do
  "$bin/tessera-worker" --coordinator "$address" 2>>"$work/worker.log" &
  pids+=($!)
done

# The trickling tenant's median TTFT (ms), sending with key $1.
trickle() {
  TESSERA_API_KEY=$1 "$bin/tessera-bench" serve --address "$address" --num-prompts "$TRICKLE" --concurrency 1 \
    --input-len "$INPUT" --output-len "$OUTPUT" --seed 2 --wait-ready 120 >"$work/trickle.txt"
  sed -nE 's/^TTFT +ms +mean +[0-9.]+ +median +([0-9.]+).*/\1/p' "$work/trickle.txt"
}
# The same, while key $1 keeps FLOOD requests in (stopped once the trickle is done).
under_flood() {
  TESSERA_API_KEY=$1 "$bin/tessera-bench" serve --address "$address" --num-prompts $((FLOOD * 1000)) \
    --concurrency "$FLOOD" --input-len "$INPUT" --output-len "$OUTPUT" --seed 1 >/dev/null &
  local flood=$!
  sleep 2  # the flood fills the batch and the queue
  trickle "$2"
  kill "$flood"
  wait "$flood" 2>/dev/null || true
  # Let the server finish the flood's requests before the next measurement.
  while TESSERA_API_KEY=trickle-key "$bin/tessera" info --address "$address" 2>/dev/null | grep -qE '"(running|waiting)_requests": [1-9]'; do sleep 0.5; done
}

alone=$(trickle trickle-key)
fair=$(under_flood flood-key trickle-key)
fifo=$(under_flood trickle-key trickle-key)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "CPU: $cpu ($(nproc) cores); $WORKERS worker(s), --max-running $MAX_RUNNING; $FLOOD flood clients," \
  "$TRICKLE trickle requests, input $INPUT, output $OUTPUT tokens"
echo
echo "| trickling tenant's requests | TTFT median ms | vs alone |"
echo "|---|---|---|"
echo "| alone | $alone | 1.0x |"
awk -v a="$alone" -v f="$fair" -v o="$fifo" 'BEGIN {
  printf "| under the flood, as a second tenant (fair share) | %s | %.1fx |\n", f, f / a
  printf "| under the flood, same key as the flood (one tenant, FIFO) | %s | %.1fx |\n", o, o / a
}'
