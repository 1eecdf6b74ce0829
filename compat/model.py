"""Dialect-free request and result types: what every dialect is parsed into and rendered from."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import repeat
from typing import Any, NamedTuple, overload

__all__ = ["RankedItem", "Ranking", "RerankOutcome", "RerankQuery", "ranked_pairs", "result_dicts"]


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


_NEW_ITEM = partial(tuple.__new__, RankedItem)  # RankedItem(...) minus a Python-level call per item


class Ranking(Sequence[RankedItem]):
    """Ranked results held as columns: `indexes[k]` is the k-th best document, `scores[k]` its
    relevance, `raw_scores[k]` its raw score (None: not kept).

    A sequence of RankedItem to every reader, made only when read (`ranked_pairs` reads the columns):
    a 1000-document answer rendered without raw scores makes no RankedItem at all, where building
    them cost ~180-280 µs a request (bench/gateway_cost.py)."""

    __slots__ = ("indexes", "raw_scores", "scores")

    def __init__(self, indexes: list[int], scores: list[float], raw_scores: list[float] | None = None) -> None:
        self.indexes = indexes
        self.scores = scores
        self.raw_scores = raw_scores

    def __len__(self) -> int:
        return len(self.indexes)

    @overload
    def __getitem__(self, k: int) -> RankedItem: ...
    @overload
    def __getitem__(self, k: slice) -> tuple[RankedItem, ...]: ...
    def __getitem__(self, k: int | slice) -> RankedItem | tuple[RankedItem, ...]:
        if isinstance(k, slice):
            return tuple(self)[k]
        raw = self.raw_scores[k] if self.raw_scores is not None else None
        return RankedItem(self.indexes[k], self.scores[k], raw)

    def __iter__(self) -> Iterator[RankedItem]:
        raw = repeat(None) if self.raw_scores is None else self.raw_scores
        return map(_NEW_ITEM, zip(self.indexes, self.scores, raw, strict=False))  # raw may be repeat(None)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Ranking | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable columns

    def __repr__(self) -> str:
        return f"Ranking({tuple(self)!r})"


def ranked_pairs(items: Sequence[RankedItem]) -> Iterable[tuple[int, float]]:
    """(index, relevance_score) of each result, best first: Ranking's columns, without a RankedItem each."""
    if type(items) is Ranking:
        return zip(items.indexes, items.scores, strict=True)
    return ((item.index, item.relevance_score) for item in items)


@dataclass(frozen=True)
class RerankOutcome:
    """Ranked results (best first, already cut to top_n) and accounting. `items`: a Ranking (the
    pipeline's, see there) or any sequence of RankedItem (a tuple in tests and examples)."""

    items: Sequence[RankedItem]
    model: str
    prompt_tokens: int
    request_id: str
    warnings: tuple[str, ...] = field(default=())


def result_dicts(
    q: RerankQuery, out: RerankOutcome, *, score: str, documents: Sequence[object]
) -> list[dict[str, Any]]:
    """Each result as `{"index", <score>: relevance, "document"?, "raw_score"?}`, best first (Voyage,
    Pinecone); `documents[index]` is what `return_documents` returns."""
    if not (q.return_documents or q.raw_scores):  # the common answer: one dict per result, no RankedItem
        return [{"index": index, score: relevance} for index, relevance in ranked_pairs(out.items)]
    data: list[dict[str, Any]] = []
    for item in out.items:
        d: dict[str, Any] = {"index": item.index, score: item.relevance_score}
        if q.return_documents:
            d["document"] = documents[item.index]
        if q.raw_scores and item.raw_score is not None:
            d["raw_score"] = item.raw_score
        data.append(d)
    return data
