#!/usr/bin/env bash
# What each KV cache dtype costs in quality, against f32 in the same run, on each text:
# - on the text itself (`tessera perplexity --reference-kv-cache-dtype f32`, sliding
#   windows of the model's context): perplexity against f32's; the share of tokens
#   whose top prediction is f32's ("same top", as llama.cpp's `llama-perplexity
#   --kl-divergence` calls it) and, where it is not, f32's own margin there (its top
#   logit minus its logit of the token the dtype put on top: how near a tie it broke);
#   the mean KL divergence of the next-token distributions from f32's;
# - greedy continuations: PROMPTS prompts (windows of 32 tokens taken evenly from the
#   text) continued by NEW tokens with each dtype; the share of tokens equal, position
#   by position, to the f32 continuation (a divergence counts every token after it).
#
#   bench/kv_quality.sh [MODEL_DIR] [TEXT...]
#   Default model: the bundled tessera-tiny-llama, trained on Debian's King James
#   Bible. Default texts, neither of which it saw: the Book of Tobit from the World
#   English Bible (public domain, not in the KJV; from Debian's bibledit-data,
#   `apt install bibledit-data` to include it) and /usr/share/common-licenses/GPL-3
#   (English prose far from its domain, on every Debian machine).
#   env: PROMPTS=100 NEW=32 CPU_ISA=auto (the kernel level, `--cpu-isa`: on `avx512-bf16`
#   a prefill rounds activations to bf16, docs/cpu-kernels.md; the others keep fp32)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
model="${1:-$root/assets/models/tessera-tiny-llama}"
tessera="$root/build/bin/tessera"
[ -x "$tessera" ] || "$root/scripts/build.sh"
PROMPTS=${PROMPTS:-100} NEW=${NEW:-32} CPU_ISA=${CPU_ISA:-auto}
dtypes=(f32 bf16 f16 int8 fp8_e4m3)
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

texts=("${@:2}")
if [ ${#texts[@]} -eq 0 ]; then
  if [ -r /usr/share/bibledit/databases/sample.sqlite ]; then
    "$root/bench/world_english_bible.py" TOB >"$work/tobit.txt"
    texts+=("$work/tobit.txt")
  else
    echo "(bibledit-data not installed: the World English Bible's Tobit is left out)"
  fi
  texts+=(/usr/share/common-licenses/GPL-3)
fi

echo "model $model; $PROMPTS prompts of 32 tokens, $NEW new tokens each"
for text in "${texts[@]}"; do
  for d in "${dtypes[@]}"; do
    "$tessera" perplexity --model "$model" --text "$text" --quiet --kv-cache-dtype "$d" --cpu-isa "$CPU_ISA" \
      --reference-kv-cache-dtype f32 >"$work/ppl.$d"
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
      "$tessera" generate --model "$model" --ids "$prompt" --max-new-tokens "$NEW" --quiet --kv-cache-dtype "$d" \
        --cpu-isa "$CPU_ISA"
    done <"$work/prompts" >"$work/gen.$d"
  done
  echo
  python3 - "$work" "$text" "${dtypes[@]}" <<'PY'
import json, os, sys
work, text, dtypes = sys.argv[1], sys.argv[2], sys.argv[3:]
ppl = {d: json.load(open(f"{work}/ppl.{d}")) for d in dtypes}
gen = {d: [l.split(",") for l in open(f"{work}/gen.{d}").read().split()] for d in dtypes}
f32 = ppl["f32"]
print(f"text {text} ({os.path.getsize(text)} bytes, {f32['tokens']} tokens scored), kernels {f32['cpu_isa']}, "
      f"f32 perplexity {f32['perplexity']:.3f}")
print(f"{'dtype':9} {'perplexity vs f32':>17} {'same top as f32':>15} {'f32 margin where not':>21} "
      f"{'mean KLD':>9} {'greedy tokens = f32':>20}")
for d in dtypes:
    ref = ppl[d]["reference"]
    same = sum(a == b for x, y in zip(gen[d], gen["f32"]) for a, b in zip(x, y))
    total = sum(len(y) for y in gen["f32"])
    margin = (f"{ref['changed_top_margin_median']:.2g}, {ref['changed_top_margin_max']:.2g}"
              if ref["same_top"] < 1 else "-")
    print(f"{d:9} {100 * (ppl[d]['perplexity'] / ref['perplexity'] - 1):+16.3f}% {100 * ref['same_top']:14.2f}% "
          f"{margin:>21} {ref['mean_kld']:9.2e} {same:>9}/{total} ({100 * same / total:4.1f}%)")
PY
done
