#!/usr/bin/env bash
# Tier 2 deployment test: the real image (deploy/image/build-local.sh, FROM scratch)
# and the rendered chart (podmanKubePlay=true) under `podman kube play`: workers
# register, a request is served exactly, the workers scale 2 -> 3 -> 2 groups by
# adding and removing their Deployments under load, and a pod is lost under load, with no failed request.
#
# Needs root and podman (installed here from Debian's packages: podman, runc,
# catatonit); exits 77 (a skip) where that is impossible. Containers live on their
# own podman network, 10.77.2.0/24, behind a blackhole route for 10.77.2.0/23 in the
# root namespace; every pod, the network and the route are removed on exit.
set -euo pipefail
source "$(dirname "$0")/tools.sh"
[ "$(id -u)" = 0 ] || { echo "not root: skipping"; exit 77; }
install_podman() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc catatonit >/dev/null
}
if ! command -v podman >/dev/null || ! command -v catatonit >/dev/null; then
  install_podman || { apt-get update -qq && install_podman; } || { echo "cannot install podman: skipping"; exit 77; }
fi
export CONTAINERS_CONF="$root/deploy/image/containers.conf"
TESSERA="$root/build/bin/tessera"
NET=tessera-tier2 SUBNET=10.77.2.0/24 BLACKHOLE=10.77.2.0/23 IMAGE=localhost/tessera:tier2
work=""
cleanup() {
  set +e
  for p in $(podman pod ls --format '{{.Name}}' --filter label=app.kubernetes.io/instance=tier2); do
    podman pod rm -f -t 2 "$p" >/dev/null 2>&1
  done
  podman network rm -f $NET >/dev/null 2>&1
  ip route del blackhole $BLACKHOLE 2>/dev/null
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT
cleanup
set -e
work="$(mktemp -d)"
fail() { echo "FAIL: $*"; podman ps -a --format '{{.Names}} {{.Status}}'; for c in $(podman ps -a --format '{{.Names}}' | grep tier2); do echo "== $c"; podman logs --tail 5 "$c" 2>&1; done; exit 1; }

ip route add blackhole $BLACKHOLE  # nothing for the test network leaves the machine
podman network create --subnet $SUBNET $NET >/dev/null
"$root/deploy/image/build-local.sh" $IMAGE
values=(--set podmanKubePlay=true --set image.repository=${IMAGE%:*} --set image.tag=${IMAGE##*:}
        --set image.pullPolicy=Never --set serving.heartbeatTimeoutMs=2000 --set serving.heartbeatMs=200)
render() { "$HELM" template tier2 "$CHART" "${values[@]}" "$@"; }

# The coordinator first: workers need its pod's address (no Service DNS here).
render --show-only templates/configmap.yaml --show-only templates/coordinator.yaml > "$work/coordinator.yaml"
podman kube play --network $NET "$work/coordinator.yaml" >/dev/null
infra=$(podman pod inspect tier2-tessera-coordinator-pod-0 --format '{{.InfraContainerID}}')
ip=$(podman inspect "$infra" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
case "$ip" in 10.77.2.*) ;; *) fail "coordinator pod has address '$ip'";; esac
coordinator="$ip:50051"                              # clients
values+=(--set coordinatorAddress=$ip:50052)          # workers: the internal port

ready_groups() { "$TESSERA" info --address "$coordinator" 2>/dev/null | grep -c '"state": "READY"' || true; }
wait_groups() {
  for _ in $(seq 1 300); do [ "$(ready_groups)" = "$1" ] && return 0; sleep 0.2; done
  fail "expected $1 READY groups, have $(ready_groups)"
}
# Plays (or, with `down`, stops) the ConfigMap and the named groups' Deployments out
# of the chart rendered for `groups` groups: scaling replaces Deployments group by group.
workers() {
  local action=$1 groups=$2; shift 2
  render --set workers.groups="$groups" --show-only templates/configmap.yaml --show-only templates/workers.yaml |
    python3 -c '
import sys
keep = {"tier2-tessera-workers-" + g for g in sys.argv[1:]}
docs = sys.stdin.read().split("\n---\n")
print("\n---\n".join(d for d in docs if "kind: ConfigMap" in d or any("name: " + k + "\n" in d for k in keep)))
' "$@" > "$work/workers.yaml"
  if [ "$action" = down ]; then
    podman kube down "$work/workers.yaml" >/dev/null
  else
    podman kube play --network $NET "$work/workers.yaml" >/dev/null
  fi
}

workers play 2 g0 g1
wait_groups 2
echo "2 groups registered and ready"

# Served exactly: the same greedy ids as the CLI computes in-process.
model="$root/assets/models/tessera-tiny-llama"
want=$("$TESSERA" generate --model "$model" --ids 1,2,3,4,5 --max-new-tokens 16)
got=$("$TESSERA" client --address "$coordinator" --ids 1,2,3,4,5 --max-tokens 16 --temperature 0 2>/dev/null)
[ "$got" = "$want" ] || fail "served '$got', expected '$want'"
echo "a request is served exactly"

# A steady load of requests in the background; every one must succeed.
load() {
  local failed=0
  for i in $(seq 1 "$1"); do
    "$TESSERA" client --address "$coordinator" --ids "$i,7,9,11" --max-tokens 24 --temperature 0 >/dev/null 2>&1 || failed=$((failed + 1))
  done
  echo "$failed" > "$work/failed.$2"
}
load 30 scale & loader=$!
sleep 1
workers play 3 g2  # a third group's Deployment joins
wait_groups 3
workers down 3 g0  # the first group's leaves: SIGTERM, its worker drains
wait_groups 2
wait $loader
[ "$(cat "$work/failed.scale")" = 0 ] || fail "$(cat "$work/failed.scale") requests failed while scaling 2 -> 3 -> 2"
echo "scaled 2 -> 3 -> 2 groups under load, no failed request"

load 30 kill & loader=$!
sleep 1
podman pod kill tier2-tessera-workers-g1-pod-0 >/dev/null
wait $loader
[ "$(cat "$work/failed.kill")" = 0 ] || fail "$(cat "$work/failed.kill") requests failed after losing a pod"
wait_groups 1
echo "lost a pod under load, no failed request"
echo "tier 2: ok"
