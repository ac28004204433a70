#!/usr/bin/env bash
# Tier 0 deployment tests: lint, render and schema-validate the Helm chart
# (deploy/tests/chart.test.mjs).
set -euo pipefail
source "$(dirname "$0")/tools.sh"
cp "$root/deploy/tests/chart.test.mjs" "$tools/"  # resolves its imports from the tools' node_modules
HELM="$HELM" CHART="$CHART" node --test "$tools/chart.test.mjs"
