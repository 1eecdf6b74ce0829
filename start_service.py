#!/usr/bin/env python3
"""vllm-rerank entry point: `python start_service.py [flags] [-- vllm serve flags]`.

The same as `vllm-rerank serve` (vllm_rerank/service.py), for a checkout with nothing installed
but the dependencies: the origin guide's command. Run `--help` for every flag.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_rerank.service import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
