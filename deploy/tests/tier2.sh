#!/usr/bin/env bash
# Tier 2 deployment test: the real image (deploy/image/build-local.sh, FROM scratch)
# and the rendered chart (podmanKubePlay=true) under `podman kube play`, hardened as in
# a cluster: non-root, read-only root, TLS on the client plane, mutual TLS on the
# internal one and API keys, all from Secrets. Workers register, a request is served
# exactly (and refused without a key or without trusting the CA), the workers scale
# 2 -> 3 -> 2 groups by adding and removing their Deployments under load, and a pod is
# lost under load, with no failed request.
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
COORDINATOR_IP=10.77.2.10  # fixed, so the client plane's certificate can name it
SECRETS=(tier2-tls-client tier2-tls-internal tier2-keys)
work=""
cleanup() {
  set +e
  for p in $(podman pod ls --format '{{.Name}}' --filter label=app.kubernetes.io/instance=tier2); do
    podman pod rm -f -t 2 "$p" >/dev/null 2>&1
  done
  podman network rm -f $NET >/dev/null 2>&1
  podman secret rm "${SECRETS[@]}" >/dev/null 2>&1
  podman volume rm -f "${SECRETS[@]}" >/dev/null 2>&1  # podman's copies of the secrets' files
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
        --set image.pullPolicy=Never --set serving.heartbeatTimeoutMs=2000 --set serving.heartbeatMs=200
        --set tls.clientSecret=tier2-tls-client --set tls.internalSecret=tier2-tls-internal
        --set apiKeys.secret=tier2-keys)
render() { "$HELM" template tier2 "$CHART" "${values[@]}" "$@"; }

# The Secrets, in the shape cert-manager and an operator write them: a client-plane
# certificate naming the coordinator's address, internal-plane certificates naming
# tls.internalServerName, a client key and an admin key.
certs="$work/certs"
EXTRA_SAN="IP:$COORDINATOR_IP" "$root/tests/tls/make_certs.sh" "$certs"
echo "tier2-client-key tenant-a" > "$work/api-keys"
echo "tier2-admin-key operator" > "$work/admin-keys"
# podman 4.3's kube play writes a Secret's `data` into secret volumes without decoding
# its base64, so the Secrets are made with `podman secret create` from a Secret whose
# `data` holds the files' text (JSON: YAML that needs no indenting).
secret() {  # NAME KEY=FILE...
  local name=$1
  shift
  python3 -c '
import json, sys
data = {kv.split("=", 1)[0]: open(kv.split("=", 1)[1]).read() for kv in sys.argv[2:]}
print(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": sys.argv[1]}, "data": data}))
' "$name" "$@" > "$work/secret-$name.json"
  podman secret create "$name" "$work/secret-$name.json" >/dev/null
}
secret tier2-tls-client tls.crt="$certs/server.pem" tls.key="$certs/server.key" ca.crt="$certs/ca.pem"
secret tier2-tls-internal tls.crt="$certs/node.pem" tls.key="$certs/node.key" ca.crt="$certs/ca.pem"
secret tier2-keys api-keys="$work/api-keys" admin-keys="$work/admin-keys"
export TESSERA_API_KEY=tier2-client-key  # what the tessera CLI sends
tls=(--tls-ca "$certs/ca.pem")

# The coordinator first: workers need its pod's address (no Service DNS here).
render --show-only templates/configmap.yaml --show-only templates/coordinator.yaml > "$work/coordinator.yaml"
podman kube play --network $NET --ip $COORDINATOR_IP "$work/coordinator.yaml" >/dev/null
infra=$(podman pod inspect tier2-tessera-coordinator-pod-0 --format '{{.InfraContainerID}}')
ip=$(podman inspect "$infra" --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}')
[ "$ip" = $COORDINATOR_IP ] || fail "coordinator pod has address '$ip'"
coordinator="$ip:50051"                              # clients
values+=(--set coordinatorAddress=$ip:50052)          # workers: the internal port

ready_groups() { "$TESSERA" info --address "$coordinator" "${tls[@]}" 2>/dev/null | grep -c '"state": "READY"' || true; }
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
got=$("$TESSERA" client --address "$coordinator" "${tls[@]}" --ids 1,2,3,4,5 --max-tokens 16 --temperature 0 2>/dev/null)
[ "$got" = "$want" ] || fail "served '$got', expected '$want'"
echo "a request is served exactly, over TLS with a key"
# Refused: without a key, with someone else's, and without trusting the server's CA.
! TESSERA_API_KEY= "$TESSERA" client --address "$coordinator" "${tls[@]}" --ids 1,2 --max-tokens 2 2>"$work/nokey" ||
  fail "served a request without a key"
grep -q UNAUTHENTICATED "$work/nokey" || grep -qi "key" "$work/nokey" || fail "no key: $(cat "$work/nokey")"
! TESSERA_API_KEY=guess "$TESSERA" client --address "$coordinator" "${tls[@]}" --ids 1,2 --max-tokens 2 2>/dev/null ||
  fail "served a request with an unknown key"
! "$TESSERA" client --address "$coordinator" --tls-ca "$certs/rogue-ca.pem" --ids 1,2 --max-tokens 2 2>/dev/null ||
  fail "a client trusting another CA was served"
echo "refused without a key, with an unknown key, and to a client that does not trust the server's CA"

# A steady load of requests in the background; every one must succeed.
load() {
  local failed=0
  for i in $(seq 1 "$1"); do
    "$TESSERA" client --address "$coordinator" "${tls[@]}" --ids "$i,7,9,11" --max-tokens 24 --temperature 0 >/dev/null 2>&1 ||
      failed=$((failed + 1))
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
