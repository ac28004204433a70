#!/usr/bin/env bash
# What each KV cache dtype costs in quality, against f32 in the same run, on each text:
# - perplexity (sliding windows of the model's context, `tessera perplexity`);
# - greedy continuations: PROMPTS prompts (windows of 32 tokens taken evenly from the
#   text) continued by NEW tokens with each dtype; the share of tokens equal, position
#   by position, to the f32 continuation (a divergence counts every token after it);
# - next-token choices: the prompt and f32's continuation read at once
#   (`tessera logits`); the share of the NEW steps where the dtype's top token is f32's
#   (no cascade: each step sees f32's tokens before it); where they differ, f32's margin
#   there (its top logit minus the one the dtype chose): how close a tie it broke; and
#   the mean KL divergence of the dtype's next-token distribution from f32's (the
#   measure llama.cpp's perplexity tool gives for quantization).
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
    "$tessera" perplexity --model "$model" --text "$text" --quiet --kv-cache-dtype "$d" --cpu-isa "$CPU_ISA" >"$work/ppl.$d"
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
      "$tessera" generate --model "$model" --ids "$prompt" --max-new-tokens "$NEW" --quiet --kv-cache-dtype "$d" --cpu-isa "$CPU_ISA"
    done <"$work/prompts" >"$work/gen.$d"
  done
  i=0
  paste -d, "$work/prompts" "$work/gen.f32" | while read -r ids; do
    for d in "${dtypes[@]}"; do
      "$tessera" logits --model "$model" --ids "$ids" --out "$work/logits.$d.$i" --quiet --kv-cache-dtype "$d" --cpu-isa "$CPU_ISA"
    done
    i=$((i + 1))
  done
  echo
  echo "text $text ($(wc -c <"$text") bytes), kernels $(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["cpu_isa"])' "$work/ppl.f32")"
  python3 - "$work" "$PROMPTS" "$NEW" "${dtypes[@]}" <<'PY'
import array, json, math, statistics, sys
work, prompts, new, dtypes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
ppl = {d: json.load(open(f"{work}/ppl.{d}")) for d in dtypes}
gen = {d: [l.split(",") for l in open(f"{work}/gen.{d}").read().split()] for d in dtypes}


def steps_of(d, i):
    """The log-probabilities of each step of f32's continuation of prompt i under d."""
    logits = array.array("f")
    with open(f"{work}/logits.{d}.{i}", "rb") as f:
        logits.frombytes(f.read())
    n = 32 + len(gen["f32"][i])
    vocab = len(logits) // n
    for r in range(31, n - 1):
        row = logits[r * vocab:(r + 1) * vocab]
        top = max(row)
        log_z = top + math.log(math.fsum(math.exp(x - top) for x in row))
        yield [x - log_z for x in row]


def top(logp):
    return logp.index(max(logp))


f32 = [list(steps_of("f32", i)) for i in range(prompts)]
# One forward over the sequence must choose what decoding it token by token chose.
decoded = sum(str(top(s)) == t for p, g in zip(f32, gen["f32"]) for s, t in zip(p, g))
steps = sum(len(p) for p in f32)
base = ppl["f32"]["perplexity"]
print(f"{'dtype':9} {'perplexity':>11} {'vs f32':>9} {'greedy tokens = f32':>20} "
      f"{'steps choosing as f32':>22} {'f32 margin where not':>21} {'mean KLD':>9}")
for d in dtypes:
    same = sum(a == b for x, y in zip(gen[d], gen["f32"]) for a, b in zip(x, y))
    total = sum(len(y) for y in gen["f32"])
    margins, kld = [], 0.0
    for i in range(prompts):
        for logp, ref in zip(steps_of(d, i), f32[i]):
            kld += math.fsum(math.exp(r) * (r - x) for r, x in zip(ref, logp))
            if top(logp) != top(ref):
                margins.append(ref[top(ref)] - ref[top(logp)])
    agree = steps - len(margins)
    p = ppl[d]["perplexity"]
    margin = f"{statistics.median(margins):.2g}, {max(margins):.2g}" if margins else "-"
    print(f"{d:9} {p:11.3f} {100 * (p / base - 1):+8.3f}% {same:>9}/{total} ({100 * same / total:4.1f}%) "
          f"{agree:>10}/{steps} ({100 * agree / steps:4.1f}%) {margin:>21} {kld / steps:9.2e}")
print(f"(f32 margin: median and largest, in logits. One forward over prompt + continuation "
      f"picks f32's decoded token at {decoded}/{steps} steps)")
PY
done
