#!/usr/bin/env bash
# Sets up, builds and runs the main job on the bundled model: greedy generation with
# tessera-tiny-llama (trained on the King James Bible), streamed as text.
# Arguments replace the default ones, e.g. scripts/run.sh --prompt "The LORD" --max-new-tokens 20
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/build.sh >/dev/null
MODEL=assets/models/tessera-tiny-llama
if (($#)); then
  exec build/bin/tessera generate --model "$MODEL" "$@"
fi
echo "tessera generate --model $MODEL --prompt 'And God said' --max-new-tokens 64" >&2
exec build/bin/tessera generate --model "$MODEL" --prompt "And God said" --max-new-tokens 64
