"""`python -m vllm_rerank ...`: the same as the `vllm-rerank` command."""

from __future__ import annotations

import sys

from vllm_rerank.cli import main

if __name__ == "__main__":
    sys.exit(main())
