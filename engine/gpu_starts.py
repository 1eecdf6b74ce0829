"""Engines of one process that start on the same GPUs: who is in its first start, so that an
out-of-memory retry sizes its KV cache alone (engine.supervisor), and the retry's smaller KV budget."""

from __future__ import annotations

import os
import threading
import time

from engine.config import EngineConfig, human_int

__all__ = ["STARTS", "CardStarts", "engine_cards", "scaled_kv_budget", "smaller"]


class CardStarts:
    """The first starts of this process's engines, by the GPUs each runs on.

    vLLM sizes its KV cache from the memory it sees free while it profiles, so an engine that profiles
    while another on its card allocates sizes its cache from the other's allocations and can fail
    ("No available memory for the cache blocks"). An out-of-memory retry therefore waits until no
    other engine that shares a card with it is in its first start, and such retries run one at a
    time (`begin_alone`); first starts themselves run together (explicit KV budgets keep them
    apart, gateway.topology)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._starting: dict[str, frozenset[str]] = {}  # engine name -> its cards

    def begin(self, name: str, cards: frozenset[str]) -> None:
        with self._cond:
            self._starting[name] = cards

    def end(self, name: str) -> None:
        with self._cond:
            self._starting.pop(name, None)
            self._cond.notify_all()

    def others(self, name: str, cards: frozenset[str]) -> list[str]:
        """The other engines in their first start on any of `cards`."""
        with self._cond:
            return sorted(n for n, c in self._starting.items() if n != name and c & cards)

    def begin_alone(self, name: str, cards: frozenset[str], stop: threading.Event, timeout_s: float) -> bool:
        """Wait until no other engine on `cards` is starting, then count `name` as starting. False (and
        nothing counted) when `stop` is set or `timeout_s` passes first."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                if stop.is_set():
                    return False
                if not any(n != name and c & cards for n, c in self._starting.items()):
                    self._starting[name] = cards
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.5))  # wakes on end(); the slice notices `stop`


STARTS = CardStarts()  # one per process: every supervisor here


def engine_cards(config: EngineConfig) -> frozenset[str] | None:
    """The GPUs an engine runs on, as CUDA_VISIBLE_DEVICES entries (its own, else the service's, else
    GPU indexes): the first `tensor_parallel_size` of them. None on CPU."""
    if config.device == "cpu":
        return None
    visible = dict(config.extra_env).get("CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES"))
    entries = [v.strip() for v in visible.split(",") if v.strip()] if visible is not None else []
    tp = max(1, config.tensor_parallel_size)
    return frozenset(entries[:tp] if entries else (str(i) for i in range(tp)))


def scaled_kv_budget(args: tuple[str, ...], factor: float) -> tuple[str, ...]:
    """`args` with an explicit --kv-cache-memory-bytes scaled by `factor` (unchanged without one)."""
    out = list(args)
    for i, a in enumerate(out):
        if a == "--kv-cache-memory-bytes" and i + 1 < len(out) and (n := human_int(out[i + 1])) is not None:
            out[i + 1] = str(int(n * factor))
        elif a.startswith("--kv-cache-memory-bytes=") and (n := human_int(a.split("=", 1)[1])) is not None:
            out[i] = f"--kv-cache-memory-bytes={int(n * factor)}"
    return tuple(out)


def smaller(config: EngineConfig) -> EngineConfig:
    """The config of an out-of-memory retry: 0.15 less of the card (at least 0.1; vLLM's 0.92 when
    unset), and an explicit KV budget scaled down with it."""
    util = config.gpu_memory_utilization or 0.92
    lower = round(max(0.1, util - 0.15), 2)
    return config.with_(gpu_memory_utilization=lower, extra_args=scaled_kv_budget(config.extra_args, lower / util))
