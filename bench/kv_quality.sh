#!/usr/bin/env bash
# What each KV cache dtype costs in quality, against f32 in the same run:
# - perplexity of TEXT (sliding windows of the model's context, `tessera perplexity`);
# - greedy continuations: PROMPTS prompts (windows of 32 tokens taken evenly from TEXT)
#   continued by NEW tokens with each dtype; the share of tokens equal, position by
#   position, to the f32 continuation (a divergence counts every token after it).
#
#   bench/kv_quality.sh [MODEL_DIR] [TEXT]
#   (default: the bundled tessera-tiny-llama, trained on the King James Bible, and
#   /usr/share/common-licenses/GPL-3, English prose it never saw, on every Debian)
#   env: PROMPTS=100 NEW=32
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
text="${2:-/usr/share/common-licenses/GPL-3}"
tessera="$root/build/bin/tessera"
[ -x "$tessera" ] || "$root/scripts/build.sh"
PROMPTS=${PROMPTS:-100} NEW=${NEW:-32}
dtypes=(f32 bf16 f16 int8 fp8_e4m3)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "model $model, text $text"
for d in "${dtypes[@]}"; do
  "$tessera" perplexity --model "$model" --text "$text" --quiet --kv-cache-dtype "$d" >"$work/ppl.$d"
done
"$tessera" tokenize --model "$model" --text "$(cat "$text")" >"$work/ids"
python3 - "$work/ids" "$PROMPTS" >"$work/prompts" <<'PY'
import sys
ids = open(sys.argv[1]).read().strip().split(",")
n = int(sys.argv[2]); span = 32
step = max(1, (len(ids) - span) // n)
for i in range(n):
    print(",".join(ids[i * step:i * step + span]))
PY
for d in "${dtypes[@]}"; do
  while read -r prompt; do
    "$tessera" generate --model "$model" --ids "$prompt" --max-new-tokens "$NEW" --quiet --kv-cache-dtype "$d"
  done <"$work/prompts" >"$work/gen.$d"
done
python3 - "$work" "${dtypes[@]}" <<'PY'
import json, sys
work, dtypes = sys.argv[1], sys.argv[2:]
ppl = {d: json.load(open(f"{work}/ppl.{d}")) for d in dtypes}
gen = {d: [l.split(",") for l in open(f"{work}/gen.{d}").read().split()] for d in dtypes}
base = ppl["f32"]["perplexity"]
print(f"{'dtype':9} {'perplexity':>11} {'vs f32':>9} {'greedy tokens = f32':>20}")
for d in dtypes:
    same = sum(a == b for x, y in zip(gen[d], gen["f32"]) for a, b in zip(x, y))
    total = sum(len(y) for y in gen["f32"])
    p = ppl[d]["perplexity"]
    print(f"{d:9} {p:11.3f} {100 * (p / base - 1):+8.3f}% {same:>9}/{total} ({100 * same / total:.1f}%)")
PY
