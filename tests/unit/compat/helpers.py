"""Tiny builders for compat unit tests (no engine: outcomes are made by hand)."""

from __future__ import annotations

from collections.abc import Sequence

from compat.model import RerankOutcome
from core.ranking import rank


def outcome(
    scores: Sequence[float],
    *,
    top_n: int | None = None,
    raw: Sequence[float] | None = None,
    model: str = "served-model",
    tokens: int = 42,
    request_id: str = "req-1",
) -> RerankOutcome:
    """A RerankOutcome as the service would build it from these relevance scores."""
    items = rank(list(scores), raw_scores=list(raw) if raw else None, top_n=top_n)
    return RerankOutcome(items=items, model=model, prompt_tokens=tokens, request_id=request_id)
