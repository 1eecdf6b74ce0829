#!/usr/bin/env bash
# Run the service (CPU engine + bundled offline model by default) on port 8000.
# Every argument goes to start_service.py (see --help); env vars as in the README.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" cpu
exec "${VLLM_RERANK_VENV:-$ROOT/.venv}/bin/python" "$ROOT/start_service.py" "$@"
