#!/usr/bin/env bash
# The static gates CI runs before the tests: ruff (lint + format), mypy (strict on core/engine/compat),
# import-linter (the layer contracts). All configured in pyproject.toml; installed by the test bootstrap.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" "cpu,test"
BIN="${VLLM_RERANK_VENV:-$ROOT/.venv}/bin"
cd "$ROOT"
echo "[lint] ruff check" >&2
"$BIN/ruff" check .
echo "[lint] ruff format --check" >&2
"$BIN/ruff" format --check .
echo "[lint] mypy" >&2
"$BIN/mypy"
echo "[lint] import-linter" >&2
"$BIN/lint-imports"
