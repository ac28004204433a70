#!/usr/bin/env bash
# Nodes as network namespaces, for multi-node tests and benchmarks on one machine.
#
#   nodes.sh up N            N nodes tessera-node0..N-1 on one switch (a bridge in its own
#                            namespace), at 10.77.3.10+i, named node0..node{N-1} in each
#                            node's /etc/hosts; a blackhole route for 10.77.3.0/24 in the
#                            root namespace keeps every packet on this machine
#   nodes.sh cap I RATE      cap node I's link with tbf, both directions (e.g. 1gbit)
#   nodes.sh delay I MS      put node I's link through a userspace delay line (TAP
#                            devices; the kernel here has no netem), MS each way
#   nodes.sh partition I     cut node I off the switch;  nodes.sh heal I: reconnect it
#   nodes.sh exec I CMD...   run CMD on node I
#   nodes.sh down            remove every namespace, device, process and route
#
# Needs root. DELAY_LINE overrides the delay line binary (default build/bin/delay_line).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
SW=tessera-switch SUBNET=10.77.3.0/24 STATE=/run/tessera-nodes
DELAY_LINE="${DELAY_LINE:-$root/build/bin/delay_line}"
ns() { echo "tessera-node$1"; }
ip_of() { echo "10.77.3.$((10 + $1))"; }
# The switch side of node I's link: a veth port, or the delay line's TAP.
port_of() { if [ -e "$STATE/delay$1.pid" ]; then echo "dlb$1"; else echo "port$1"; fi; }

case "${1:-}" in
  up)
    n=$2
    "$0" down
    mkdir -p "$STATE"
    ip route add blackhole $SUBNET
    ip netns add $SW
    ip -n $SW link add br0 type bridge
    ip -n $SW link set br0 up
    ip -n $SW link set lo up
    hosts="127.0.0.1 localhost"
    for i in $(seq 0 $((n - 1))); do hosts+=$'\n'"$(ip_of "$i") node$i"; done
    for i in $(seq 0 $((n - 1))); do
      ip netns add "$(ns "$i")"
      mkdir -p "/etc/netns/$(ns "$i")"
      echo "$hosts" > "/etc/netns/$(ns "$i")/hosts"
      ip link add "port$i" netns $SW type veth peer name eth0 netns "$(ns "$i")"
      ip -n $SW link set "port$i" master br0 up
      ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev eth0
      ip -n "$(ns "$i")" link set eth0 up
      ip -n "$(ns "$i")" link set lo up
    done
    echo "$n" > "$STATE/nodes"
    ;;
  cap)
    i=$2 rate=$3
    tc -n "$(ns "$i")" qdisc replace dev eth0 root tbf rate "$rate" burst 512kb latency 100ms
    tc -n $SW qdisc replace dev "$(port_of "$i")" root tbf rate "$rate" burst 512kb latency 100ms
    ;;
  delay)
    i=$2 ms=$3
    ip -n $SW link del "port$i"  # takes the node's veth end with it
    rm -f "$STATE/delay$i.ready"
    setsid "$DELAY_LINE" --a "dla$i" --b "dlb$i" --delay-ms "$ms" --ready-file "$STATE/delay$i.ready" \
      </dev/null >/dev/null 2>&1 &
    echo $! > "$STATE/delay$i.pid"
    for _ in $(seq 1 100); do [ -e "$STATE/delay$i.ready" ] && break; sleep 0.05; done
    ip link set "dla$i" netns "$(ns "$i")"
    ip -n "$(ns "$i")" link set "dla$i" name eth0
    ip -n "$(ns "$i")" addr add "$(ip_of "$i")/24" dev eth0
    ip -n "$(ns "$i")" link set eth0 up
    ip link set "dlb$i" netns $SW
    ip -n $SW link set "dlb$i" master br0 up
    ;;
  partition) ip -n $SW link set "$(port_of "$2")" down ;;
  heal) ip -n $SW link set "$(port_of "$2")" up ;;
  exec)
    i=$2
    shift 2
    exec ip netns exec "$(ns "$i")" "$@"
    ;;
  down)
    for pid in "$STATE"/delay*.pid; do [ -e "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true; done
    for n in $(ip netns list | awk '/^tessera-node[0-9]+/ {print $1}'); do
      ip netns pids "$n" | xargs -r kill -9 2>/dev/null || true
      ip netns del "$n"
      rm -rf "/etc/netns/$n"
    done
    ip netns del $SW 2>/dev/null || true
    ip route del blackhole $SUBNET 2>/dev/null || true
    rm -rf "$STATE"
    ;;
  *)
    sed -n '2,16p' "$0"
    exit 2
    ;;
esac
