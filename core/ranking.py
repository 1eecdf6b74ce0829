"""Scores → ranking: map raw engine scores into [0, 1], sort, cut to top_n."""

from __future__ import annotations

import math
from collections.abc import Sequence

from compat.model import Ranking

__all__ = ["rank", "relevances", "sigmoid"]


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def relevances(score_kind: str, values: Sequence[float], *, offset: float = 0.0) -> list[float]:
    """Map engine scores into [0, 1], monotonically (the per-request hot path: no call per score).

    cosine (bi-encoders): (cos + 1) / 2.  logit (every classifier format: cross-encoders and LLM
    rerankers, whose engine is asked for the raw logit): sigmoid(logit - offset), where offset is a
    format's own normalisation (0 for all but mxbai-rerank).

    Raises: ValueError for an unknown score kind."""
    exp = math.exp
    if score_kind == "cosine":
        # min(1.0, max(0.0, y)) spelled out (no calls; NaN -> 0.0 as there)
        return [(z if (z := (y if (y := (v + 1.0) * 0.5) > 0.0 else 0.0)) < 1.0 else 1.0) for v in values]
    if score_kind == "logit":
        # sigmoid() inlined: the same two branches, so bit-identical results
        if offset:
            values = [v - offset for v in values]
        return [1.0 / (1.0 + exp(-x)) if x >= 0 else (e := exp(x)) / (1.0 + e) for x in values]
    raise ValueError(f"unknown score kind {score_kind!r}")


def rank(
    relevance_scores: Sequence[float], *, raw_scores: Sequence[float] | None = None, top_n: int | None = None
) -> Ranking:
    """Sort by relevance descending, ties by original index; keep the best `top_n` (clamped).
    The result is columns (compat.model.Ranking): no RankedItem is made until one is read."""
    # sorted() is stable: with reverse=True equal scores keep ascending index order.
    order = sorted(range(len(relevance_scores)), key=relevance_scores.__getitem__, reverse=True)
    if top_n is not None:
        order = order[: max(0, top_n)]
    rel = list(map(relevance_scores.__getitem__, order))
    raw = None if raw_scores is None else list(map(raw_scores.__getitem__, order))
    return Ranking(order, rel, raw)
