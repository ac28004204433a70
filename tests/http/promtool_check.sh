#!/usr/bin/env bash
# GET /metrics after a known workload: `promtool check metrics` (Prometheus' own linter,
# from Debian's prometheus package, unpacked into build/http-test-tools, not installed)
# passes, and the request counter says what was sent. Exits 77 (a skip for CTest) when
# the package cannot be downloaded.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/build/http-test-tools"
promtool="$tools/prometheus/usr/bin/promtool"
mkdir -p "$tools"
exec 9>"$tools/.lock"
flock 9
if [ ! -x "$promtool" ]; then
  (cd "$tools" && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb prometheus) ||
    { echo "cannot download Debian's prometheus package: skipping"; exit 77; }
fi
flock -u 9

source "$root/tests/http/serve_bundled.sh" "$1"
for i in 1 2 3; do
  curl -sf "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"prompt\": \"In the beginning $i\", \"max_tokens\": 4, \"ignore_eos\": true}" >/dev/null
done
curl -sf "$URL/metrics" >"$work/metrics.txt"
# promtool parses the text (exit 1 when it cannot) and lints it (exit 3 with the
# problems). Its linter reserves ':' for recording rules; the names are vLLM's style
# (vllm:..., here tessera:...) on purpose, so that one rule is let through, no other.
status=0
"$promtool" check metrics <"$work/metrics.txt" 2>"$work/lint.txt" || status=$?
problems="$(grep -v "metric names should not contain ':'" "$work/lint.txt" || true)"
if [ "$status" -ne 0 ] && [ "$status" -ne 3 ] || [ -n "$problems" ]; then
  echo "promtool check metrics failed (exit $status):"; cat "$work/lint.txt"; exit 1
fi
grep -q '^tessera:request_success_total{model_name="tessera-tiny-llama",finished_reason="length"} 3$' "$work/metrics.txt" ||
  { echo "request_success_total is not 3:"; grep request_success "$work/metrics.txt"; exit 1; }
echo "promtool: ok; request_success_total 3"
