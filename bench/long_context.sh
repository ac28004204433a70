#!/usr/bin/env bash
# Bounded long context (docs/serving.md): the perplexity of a text ~25x the bundled
# model's training length under each KV policy, against sliding windows recomputed
# at the training length (HuggingFace's perplexity method: the oracle StreamingLLM
# compares with) in the same run.
#
#   bench/long_context.sh [MODEL_DIR]
#   (default: the bundled tessera-tiny-llama: trained on 256-token windows of the King
#   James Bible, max_position_embeddings 512)
# Texts: Isaiah from Debian's bible-kjv (in the model's domain; `apt install
# bible-kjv` to include it) and Debian's licence texts (English prose it never saw),
# each cut to CHARS characters. env: CHARS=46000
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
tessera="$root/build/bin/tessera"
[ -x "$tessera" ] || "$root/scripts/build.sh"
CHARS=${CHARS:-46000}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

texts=()
if command -v bible >/dev/null; then
  bible -l0 "Isaiah1:1-66:24" | grep -v '^Isaiah [0-9]*$' | sed -e 's/^ *[0-9]* //' | grep -v '^$' >"$work/all"
  head -c "$CHARS" "$work/all" >"$work/isaiah"
  texts+=(isaiah)
else
  echo "(bible-kjv not installed: the in-domain text is left out)"
fi
cat /usr/share/common-licenses/{GPL-3,GPL-2,LGPL-2.1,Apache-2.0,MPL-2.0} >"$work/all"
head -c "$CHARS" "$work/all" >"$work/licences"
texts+=(licences)

# name | flags | KV tokens a sequence holds
runs=(
  "recompute-256|--context 256 --stride 128|256"
  "recompute-512|--context 512 --stride 256|512"
  "full|--kv-policy window --window 1000000|all"
  "window-256|--kv-policy window --window 256|256"
  "sink-4+252|--kv-policy sink-window --sink-tokens 4 --window 252|256"
  "window-64|--kv-policy window --window 64|64"
  "sink-4+60|--kv-policy sink-window --sink-tokens 4 --window 60|64"
  "window-16|--kv-policy window --window 16|16"
  "sink-4+12|--kv-policy sink-window --sink-tokens 4 --window 12|16"
)
echo "model $model, f32 KV cache, CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for text in "${texts[@]}"; do
  for run in "${runs[@]}"; do
    IFS='|' read -r name flags held <<<"$run"
    # shellcheck disable=SC2086
    "$tessera" perplexity --model "$model" --text "$work/$text" --quiet --kv-cache-dtype f32 $flags |
      python3 -c 'import json, sys; d = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], sys.argv[3], d["tokens"], d["perplexity"], d["seconds"])' \
        "$text" "$name" "$held" >>"$work/results"
  done
done
python3 - "$work/results" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
base = {r[0]: float(r[4]) for r in rows if r[1] == "recompute-256"}
print(f"{'text':9} {'policy':14} {'KV tokens':>9} {'tokens':>7} {'perplexity':>11} {'vs recompute-256':>17} {'tokens/s':>9}")
for text, name, held, tokens, ppl, secs in rows:
    p = float(ppl)
    print(f"{text:9} {name:14} {held:>9} {tokens:>7} {p:11.3f} {100 * (p / base[text] - 1):+16.2f}% {int(tokens) / float(secs):9.0f}")
PY
