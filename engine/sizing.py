"""A model's size from its config: parameters and KV-cache bytes per token (pure arithmetic).

Used to plan engines before any starts: how many replicas of a small LLM reranker a GPU takes,
and the explicit KV-cache budget each engine gets when several share one card (vLLM's own
memory profiling, run by engines starting side by side, counts the others' allocations as
used and comes out negative — "No available memory for the cache blocks").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

__all__ = ["gpu_total_bytes", "kv_bytes_per_token", "param_count"]

_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def gpu_total_bytes(index: int = 0) -> int | None:
    """The memory of GPU `index` (of those visible) via NVML; None without a GPU or nvidia-ml-py."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index)).total)
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    inner = config.get("text_config")
    return inner if isinstance(inner, Mapping) else config


def param_count(config: Mapping[str, Any] | None, name: str = "") -> float | None:
    """Parameters of a transformer from its config (12·L·h² + V·h, the usual estimate; within ~15% for
    the rerankers we serve), else from a size in its name ("Qwen3-Reranker-0.6B"), else None."""
    if config:
        c = _text_config(config)
        layers, hidden, vocab = c.get("num_hidden_layers"), c.get("hidden_size"), c.get("vocab_size")
        if isinstance(layers, int) and isinstance(hidden, int):
            inter = c.get("intermediate_size")
            mlp = 3 * hidden * inter if isinstance(inter, int) else 8 * hidden * hidden
            return float(layers * (4 * hidden * hidden + mlp) + (vocab if isinstance(vocab, int) else 0) * hidden)
    m = _SIZE_IN_NAME.search(name.rsplit("/", 1)[-1])
    if m:
        return float(m.group(1)) * (1e9 if m.group(2).lower() == "b" else 1e6)
    return None


def kv_bytes_per_token(config: Mapping[str, Any] | None, dtype_bytes: int = 2) -> int | None:
    """K and V of every layer for one token: 2 · layers · kv_heads · head_dim · bytes (None: unknown)."""
    if not config:
        return None
    c = _text_config(config)
    layers, hidden, heads = c.get("num_hidden_layers"), c.get("hidden_size"), c.get("num_attention_heads")
    if not (isinstance(layers, int) and isinstance(hidden, int) and isinstance(heads, int)) or not heads:
        return None
    kv_heads = c.get("num_key_value_heads")
    head_dim = c.get("head_dim")
    kv = kv_heads if isinstance(kv_heads, int) and kv_heads else heads
    dim = head_dim if isinstance(head_dim, int) and head_dim else hidden // heads
    return 2 * layers * kv * dim * dtype_bytes
