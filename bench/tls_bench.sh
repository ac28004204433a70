#!/usr/bin/env bash
# What TLS and keys cost: the same serving load against a plaintext server and against
# one with everything on (TLS on the client port, an API key, mutual TLS between the
# coordinator and its worker), ROUNDS times each, alternating, in the same run.
# Prints the median of each figure over the rounds, and the TLS/plaintext ratio.
#
#   bench/tls_bench.sh [MODEL_DIR]   (default: the bundled tessera-tiny-llama)
#   env: ROUNDS=3 PROMPTS=256 CONCURRENCY=16 INPUT=64 OUTPUT=64
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
bin="$root/build/bin"
for b in tessera-bench tessera-coordinator tessera-worker; do [ -x "$bin/$b" ] || "$root/scripts/build.sh"; done
ROUNDS=${ROUNDS:-3} PROMPTS=${PROMPTS:-256} CONCURRENCY=${CONCURRENCY:-16} INPUT=${INPUT:-64} OUTPUT=${OUTPUT:-64}
work="$(mktemp -d)"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$root/tests/tls/make_certs.sh" "$work/certs" >/dev/null
c="$work/certs"
echo "bench-key bench" >"$work/keys"
echo "admin-key operator" >"$work/admin-keys"

# start NAME on|off: a coordinator and one worker, everything plaintext or everything
# on. Sets $address_NAME, the client port.
start() {
  local name=$1 tls=$2
  local coordinator_flags=() internal=()
  if [ "$tls" = on ]; then
    internal=(--internal-tls-ca "$c/ca.pem" --internal-tls-cert "$c/node.pem" --internal-tls-key "$c/node.key")
    coordinator_flags=(--tls-cert "$c/server.pem" --tls-key "$c/server.key" --api-key-file "$work/keys"
                       --admin-key-file "$work/admin-keys" "${internal[@]}")
  fi
  "$bin/tessera-coordinator" --model "$model" --listen 127.0.0.1:0 --port-file "$work/$name.port" \
    --internal-listen 127.0.0.1:0 --internal-port-file "$work/$name.internal" "${coordinator_flags[@]}" \
    2>"$work/$name.coordinator.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/$name.internal" ] && break; sleep 0.1; done
  "$bin/tessera-worker" --coordinator "127.0.0.1:$(cat "$work/$name.internal")" "${internal[@]}" \
    2>"$work/$name.worker.log" &
  pids+=($!)
  printf -v "address_$name" '127.0.0.1:%s' "$(cat "$work/$name.port")"
}
start plain off
start tls on

# run NAME: one load; appends "throughput ttft_median tpot_median" to $work/NAME.txt.
run() {
  local address_var="address_$1" extra=()
  [ "$1" = tls ] && extra=(--tls-ca "$c/ca.pem")
  TESSERA_API_KEY=bench-key "$bin/tessera-bench" serve --address "${!address_var}" "${extra[@]}" \
    --num-prompts "$PROMPTS" --concurrency "$CONCURRENCY" --input-len "$INPUT" --output-len "$OUTPUT" \
    --wait-ready 120 >"$work/out.txt"
  grep -q "failed 0" "$work/out.txt" || { cat "$work/out.txt"; exit 1; }
  awk '/^output token throughput/ {t = $4} /^TTFT/ {f = $6} /^TPOT/ {p = $6} END {print t, f, p}' \
    "$work/out.txt" >>"$work/$1.txt"
}
run plain >/dev/null && : >"$work/plain.txt"  # a warm-up round each, not counted
run tls >/dev/null && : >"$work/tls.txt"
for _ in $(seq 1 "$ROUNDS"); do
  run plain
  run tls
done

median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
figure() { cut -d' ' -f"$2" "$work/$1.txt" | median; }
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)
echo "CPU: $cpu ($(nproc) cores); one worker; $PROMPTS prompts at concurrency $CONCURRENCY, input $INPUT," \
  "output $OUTPUT tokens; medians of $ROUNDS alternating rounds"
echo
echo "| | plaintext | TLS + key + internal mTLS | ratio |"
echo "|---|---|---|---|"
awk -v a="$(figure plain 1)" -v b="$(figure tls 1)" 'BEGIN { printf "| output tok/s | %.0f | %.0f | %.2f |\n", a, b, b / a }'
awk -v a="$(figure plain 2)" -v b="$(figure tls 2)" 'BEGIN { printf "| TTFT median ms | %.1f | %.1f | %.2f |\n", a, b, b / a }'
awk -v a="$(figure plain 3)" -v b="$(figure tls 3)" 'BEGIN { printf "| TPOT median ms | %.2f | %.2f | %.2f |\n", a, b, b / a }'
