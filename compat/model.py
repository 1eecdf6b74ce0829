"""Dialect-free request and result types: what every dialect is parsed into and rendered from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = ["RankedItem", "RerankOutcome", "RerankQuery"]


@dataclass(frozen=True)
class RerankQuery:
    """One rerank request, whatever the dialect.

    texts: the text scored for each document (after rank_fields); originals: the documents as
    sent, for `return_documents`. top_n None means all.
    """

    query: str
    texts: tuple[str, ...]
    originals: tuple[object, ...]
    model: str | None = None
    top_n: int | None = None
    return_documents: bool = False
    max_tokens_per_doc: int | None = None
    max_chunks_per_doc: int | None = None
    instruction: str | None = None
    raw_scores: bool = False
    truncate: bool = True


class RankedItem(NamedTuple):
    """One ranked result (a NamedTuple: immutable, and cheap to build thousands of per request)."""

    index: int  # type: ignore[assignment]  # the wire name; shadows tuple.index, which nothing calls
    relevance_score: float
    raw_score: float | None = None


@dataclass(frozen=True)
class RerankOutcome:
    """Ranked results (best first, already cut to top_n) and accounting."""

    items: tuple[RankedItem, ...]
    model: str
    prompt_tokens: int
    request_id: str
    warnings: tuple[str, ...] = field(default=())
