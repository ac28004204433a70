#!/usr/bin/env bash
# Sets up, builds and runs the main job on the bundled model: greedy generation from
# the beginning-of-text token with tessera-tiny-llama (trained on the King James Bible).
# Arguments replace the default ones, e.g. scripts/run.sh --ids 2046,400 --max-new-tokens 8
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh >/dev/null
MODEL=assets/models/tessera-tiny-llama
if (($#)); then
  exec build/bin/tessera generate --model "$MODEL" "$@"
fi
echo "tessera generate --model $MODEL --ids 2046 --max-new-tokens 48" >&2
exec build/bin/tessera generate --model "$MODEL" --ids 2046 --max-new-tokens 48
