#!/usr/bin/env bash
# Cross-node throughput: the serving load generator against a cluster spread over
# namespace nodes (tests/netns/nodes.sh), with the link between the two ranks of a
# TP=2 group uncapped, capped at 10 and 1 Gbit/s, and delayed 20 ms each way. For
# each link: output tok/s, TTFT and TPOT percentiles (tessera-bench serve), KV block
# transfer GB/s over the same link (kv_transfer_bench), and raw TCP (iperf3 -R), all
# in the same run. Prints a markdown table.
#
#   bench/cluster_bench.sh [MODEL_DIR]      (default: the bundled tessera-tiny-llama)
#
# Topology: coordinator and clients on node0; the TP=2 group's ranks on node1 and
# node2; node2's link is the one shaped. Needs root.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
bin="$root/build/bin"
nodes="$root/tests/netns/nodes.sh"
for b in tessera tessera-bench tessera-coordinator tessera-worker kv_transfer_bench delay_line; do
  [ -x "$bin/$b" ] || "$root/scripts/build.sh"
done
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null
PROMPTS=${PROMPTS:-16} CONCURRENCY=${CONCURRENCY:-4} INPUT=${INPUT:-64} OUTPUT=${OUTPUT:-32}
log="$(mktemp -d)"
trap '"$nodes" down; rm -rf "$log"' EXIT

field() { sed -nE "s/^$1 +ms +mean +[0-9.]+ +median +([0-9.]+) +p99 +([0-9.]+).*/\\1 \\2/p" "$2"; }

echo "| link (node1 <-> node2) | iperf3 GB/s | KV fetch GB/s | KV / raw | output tok/s | TTFT p50 / p99 ms | TPOT p50 / p99 ms |"
echo "|---|---|---|---|---|---|---|"
for link in uncapped 10gbit 1gbit delay20ms; do
  "$nodes" up 3
  case $link in
    delay20ms) "$nodes" delay 2 20 ;;
    *gbit) "$nodes" cap 2 "$link" ;;
  esac
  "$nodes" exec 1 iperf3 -s -D -B 10.77.3.11 -p 5201
  ("$nodes" exec 1 "$bin/kv_transfer_bench" serve --listen 10.77.3.11:7000 --blocks 64 >/dev/null 2>&1 &)
  sleep 0.5
  raw=$("$nodes" exec 2 iperf3 -c node1 -p 5201 -R -P 4 -t 3 -J |
        python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8e9))')
  kv=$("$nodes" exec 2 "$bin/kv_transfer_bench" fetch --peer node1:7000 --blocks 64 --streams 4 --repeat 3 |
       sed -E 's/.*mean ([0-9.]+) GB\/s.*/\1/')

  ("$nodes" exec 0 "$bin/tessera-coordinator" --model "$model" --listen 0.0.0.0:0 --port-file "$log/port" --tp 2 \
    > "$log/coordinator.log" 2>&1 &)
  for _ in $(seq 1 100); do [ -s "$log/port" ] && break; sleep 0.1; done
  coordinator="node0:$(cat "$log/port")"
  for n in 1 2; do
    ("$nodes" exec $n "$bin/tessera-worker" --coordinator "$coordinator" --listen 0.0.0.0:0 --busy-poll \
      > "$log/worker$n.log" 2>&1 &)
  done
  "$nodes" exec 0 "$bin/tessera" client --address "$coordinator" --ids 1,2,3 --max-tokens 2 --wait-ready 120 >/dev/null 2>&1
  "$nodes" exec 0 "$bin/tessera-bench" serve --address "$coordinator" --num-prompts "$PROMPTS" \
    --concurrency "$CONCURRENCY" --input-len "$INPUT" --output-len "$OUTPUT" > "$log/bench.out"
  tok=$(sed -nE 's/^output token throughput ([0-9.]+).*/\1/p' "$log/bench.out")
  read -r ttft50 ttft99 <<<"$(field TTFT "$log/bench.out")"
  read -r tpot50 tpot99 <<<"$(field TPOT "$log/bench.out")"
  ratio=$(python3 -c "print('%.2f' % ($kv / $raw))")
  echo "| $link | $raw | $kv | $ratio | $tok | $ttft50 / $ttft99 | $tpot50 / $tpot99 |"
  rm -f "$log/port"
done
