"""A model's size from its config: parameters and KV-cache bytes per token (pure arithmetic).

Used to plan engines before any starts: how many replicas of a small LLM reranker a GPU takes,
and the explicit KV-cache budget each engine gets when several share one card (vLLM's own
memory profiling, run by engines starting side by side, counts the others' allocations as
used and comes out negative — "No available memory for the cache blocks").
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["gpu_total_bytes", "kv_bytes_per_token", "param_count"]

_SIZE_IN_NAME = re.compile(r"(?<![\d.])(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", re.IGNORECASE)


def gpu_total_bytes(index: int = 0) -> int | None:
    """The memory of GPU `index` of those visible (CUDA_VISIBLE_DEVICES), asked of NVML: nvidia-ml-py
    where installed, else the copy vLLM ships (`vllm.third_party.pynvml`: a `pip install vllm` has
    no `pynvml` of its own), else `nvidia-smi`. None without a GPU."""
    physical = _physical_gpu(index)
    if physical is None:
        return None
    for load in (_pynvml, _vllm_pynvml):
        total = _nvml_total(load, physical)
        if total is not None:
            return total
    return _nvidia_smi_total(physical)


def _nvml_total(load: Callable[[], Any], physical: int | str) -> int | None:
    try:
        nvml = load()
        nvml.nvmlInit()
    except Exception:
        return None  # not installed, no driver
    try:
        by = nvml.nvmlDeviceGetHandleByIndex if isinstance(physical, int) else nvml.nvmlDeviceGetHandleByUUID
        return int(nvml.nvmlDeviceGetMemoryInfo(by(physical)).total)
    except Exception:
        return None
    finally:
        with contextlib.suppress(Exception):
            nvml.nvmlShutdown()


def _pynvml() -> Any:
    return importlib.import_module("pynvml")


def _vllm_pynvml() -> Any:
    """vLLM's copy of pynvml, loaded from its file: importing `vllm` itself takes seconds."""
    spec = importlib.util.find_spec("vllm")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("vllm")
    path = os.path.join(next(iter(spec.submodule_search_locations)), "third_party", "pynvml.py")
    file_spec = importlib.util.spec_from_file_location("_vllm_rerank_pynvml", path)
    if file_spec is None or file_spec.loader is None:
        raise ImportError(path)
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[file_spec.name] = module  # it looks itself up there while it loads
    try:
        file_spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[file_spec.name]
        raise
    return module


def _physical_gpu(index: int) -> int | str | None:
    """The NVML index (or GPU UUID) of CUDA device `index`; None where CUDA_VISIBLE_DEVICES hides it."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return index
    entries = [v.strip() for v in visible.split(",") if v.strip()]
    if index >= len(entries) or entries[index] in ("-1", "NoDevFiles"):
        return None
    entry = entries[index]
    return int(entry) if entry.isdigit() else entry


def _nvidia_smi_total(physical: int | str) -> int | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", f"--id={physical}", "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        return int(float(out.split()[0]) * 2**20)  # MiB
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


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
