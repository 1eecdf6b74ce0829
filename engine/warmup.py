"""The warm-up an engine answers before it counts as ready: requests shaped like real traffic.

vLLM's first request of a shape pays for what its start-up did not do (allocator growth, kernel
selection, graph or compile caches for that batch size, the API server's first tokenisation), so
the first real 100-document request after `/health` said 200 took 13.6-15.6 s on a GPU where the
next ones took well under one. The supervisor calls `warm_up()` once an engine answers `/health`
and before it marks it READY: one `/score` of a query with a batch of documents of realistic
length (the path the gateway uses for texts), and, for an engine the gateway sends token ids
(`EngineConfig.prompt_format`, core.pipeline's pretokenize), one `/classify` of token-id prompts
of the same size. Requests carry `WARMUP_HEADER`, so logs (and test fakes) can tell them apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

from engine.config import EngineConfig

__all__ = ["WARMUP_HEADER", "Warmup", "warm_up", "warmup_documents"]

WARMUP_HEADER = "x-vllm-rerank-warmup"
_CPU_DOCUMENTS = 32  # a CPU engine's batch: enough to touch every path, cheap enough to pay at start
_MAX_WORDS = 150  # ~200 tokens: a typical retrieved passage
_QUERY = "What are the health benefits of regular exercise for older adults?"
_PASSAGE = (
    "Regular physical activity helps older adults keep their strength, balance and independence. Studies "
    "of walking, swimming and resistance training report lower blood pressure, better sleep, fewer falls "
    "and a slower decline of memory, and the benefits appear even when people start late in life. "
)


@dataclass(frozen=True)
class Warmup:
    """What the warm-up did: requests answered, documents per request, seconds, and the error if one failed."""

    requests: int
    documents: int
    seconds: float
    error: str | None = None


def warmup_documents(config: EngineConfig) -> tuple[int, int]:
    """(documents per request, words per document): a full batch (`max_num_seqs`; on a CPU at most
    32) of passages of about a third of the model's window, at most ~200 tokens, so query and
    template still fit."""
    seqs = config.max_num_seqs or 256
    n = min(seqs, _CPU_DOCUMENTS) if config.device == "cpu" else seqs
    window = config.max_model_len or 512
    return max(1, n), max(8, min(_MAX_WORDS, window // 3))


def _passage(words: int, i: int) -> str:
    text = (_PASSAGE * (words // len(_PASSAGE.split()) + 1)).split()[:words]
    return f"({i}) " + " ".join(text)


def warm_up(client: httpx.Client, base: str, config: EngineConfig, *, timeout: float) -> Warmup:
    """Send the warm-up to the engine at `base` (see the module docstring); never raises for what
    the engine answers (a failed warm-up is reported in `Warmup.error`: the engine may still serve)."""
    n, words = warmup_documents(config)
    docs = [_passage(words, i) for i in range(n)]
    headers = {WARMUP_HEADER: "1"}
    started = time.monotonic()
    done = 0

    def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
        left = max(1.0, timeout - (time.monotonic() - started))
        r = client.post(f"{base}{path}", json=body, headers=headers, timeout=left)
        if r.status_code != 200:
            raise _Failed(f"{path} answered {r.status_code}: {r.text[:200]}")
        data = r.json()
        if not isinstance(data, dict):
            raise _Failed(f"{path} answered {data!r:.200}")
        return data

    try:
        post("/score", {"model": config.served_model_name, "text_1": _QUERY, "text_2": docs})
        done += 1
        if config.prompt_format is not None:
            tokens = post("/tokenize", {"model": config.served_model_name, "prompt": f"{_QUERY}\n{docs[0]}"})
            ids = [int(t) for t in tokens.get("tokens") or []]
            if ids:
                body = {"model": config.served_model_name, "input": [ids] * n, "use_activation": False}
                post("/classify", body)
                done += 1
    except (httpx.HTTPError, ValueError, _Failed) as exc:
        return Warmup(done, n, time.monotonic() - started, error=str(exc) or type(exc).__name__)
    return Warmup(done, n, time.monotonic() - started)


class _Failed(Exception):
    """Internal: the engine answered the warm-up with something other than 200."""
