#!/usr/bin/env bash
# KV block transfer between two network namespaces (two "nodes" joined by a veth
# pair), next to raw TCP throughput measured by iperf3 over the same link in the
# same run. Optionally caps the link with tbf: RATE=1gbit bench/kv_transfer_bench.sh
#
# Needs root (ip netns). Uses 10.77.1.0/24 behind a blackhole route in the root
# namespace, so nothing can leave the machine; removes everything on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/bin/kv_transfer_bench
[ -x "$BIN" ] || scripts/build.sh
command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null

A=tessera-kvb-a B=tessera-kvb-b SUBNET=10.77.1.0/24 IPA=10.77.1.1 IPB=10.77.1.2
BLOCKS=${BLOCKS:-256} REPEAT=${REPEAT:-10}
cleanup() {
  ip netns pids $A 2>/dev/null | xargs -r kill 2>/dev/null || true
  ip netns del $A 2>/dev/null || true
  ip netns del $B 2>/dev/null || true
  ip route del blackhole $SUBNET 2>/dev/null || true
}
trap cleanup EXIT
cleanup
ip route add blackhole $SUBNET
ip netns add $A
ip netns add $B
ip link add tkva type veth peer name tkvb
ip link set tkva netns $A
ip link set tkvb netns $B
ip -n $A addr add $IPA/24 dev tkva
ip -n $B addr add $IPB/24 dev tkvb
for ns in $A $B; do ip -n $ns link set lo up; done
ip -n $A link set tkva up
ip -n $B link set tkvb up
if [ -n "${RATE:-}" ]; then
  ip netns exec $A tc qdisc add dev tkva root tbf rate "$RATE" burst 1mb latency 50ms
fi

gbps_of_iperf() { python3 -c 'import json,sys; print("%.3f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8e9))'; }
ip netns exec $A iperf3 -s -B $IPA -p 5201 -D
sleep 0.5
echo "link: veth ${RATE:-uncapped}; blocks: $BLOCKS x 704 KiB (TinyLlama-1.1B shape, f32)"
for streams in 1 4; do
  raw=$(ip netns exec $B iperf3 -c $IPA -p 5201 -R -P $streams -t 4 -J | gbps_of_iperf)
  echo "iperf3 A->B, $streams stream(s): $raw GB/s"
  eval "raw_$streams=$raw"
done
ip netns exec $A "$BIN" serve --listen $IPA:7000 --blocks "$BLOCKS" >/dev/null &
sleep 1
for streams in 1 4; do
  line=$(ip netns exec $B "$BIN" fetch --peer $IPA:7000 --blocks "$BLOCKS" --streams $streams --repeat "$REPEAT")
  echo "$line"
  mean=$(sed -E 's/.*mean ([0-9.]+) GB\/s.*/\1/' <<<"$line")
  raw=$(eval echo "\$raw_$streams")
  python3 -c "print('  block transfer / raw TCP, $streams stream(s): %.2f' % ($mean / $raw))"
done
