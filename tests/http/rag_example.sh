#!/usr/bin/env bash
# examples/rag/rag.py against a coordinator and a worker of this build serving the
# bundled model with mean pooling: each question retrieves the passage it quotes, and
# every prompt finds the start of its passages in the prefix cache (the embedding
# requests computed them first).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
source "$root/tests/http/serve_bundled.sh" "$1" --embedding-pooling mean
python3 "$root/examples/rag/rag.py" --url "$URL/v1" --json \
  "The LORD is my shepherd" "Thou shalt not steal" "In the beginning was the Word" >"$work/answers"
cat "$work/answers"
python3 - "$work/answers" <<'PY'
import json, sys
answers = [json.loads(line) for line in open(sys.argv[1])]
expected = [1, 2, 5]  # the passage each question quotes (examples/rag/passages.txt)
for a, passage in zip(answers, expected):
    best = a["passages"][a["scores"].index(max(a["scores"]))]
    assert best == passage, f"{a['question']!r} retrieved passage {best}, not {passage}"
    assert a["cached_tokens"] >= 16, f"{a['question']!r}: no prefix-cache hit ({a['cached_tokens']} tokens)"
    assert a["answer"], a
assert len(answers) == len(expected), answers
print("rag example: retrieval and prefix-cache hits as expected")
PY
