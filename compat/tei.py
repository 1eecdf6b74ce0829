"""Hugging Face text-embeddings-inference rerank (`/rerank` with `texts`).

Request: `query`, `texts` (strings), `raw_scores` (default false), `return_text` (default
false), `truncate` (null = the server's default, which is on), `truncation_direction`
("Right"/"Left", any case; accepted and validated, truncation keeps the start of the text).
Response: a bare JSON array `[{index, score, text?}]`, best first, with every text (TEI has no
`top_n`; our `top_n` extension cuts it). Errors use TEI's `{error, error_type}` shape, made by
`compat.errors.error_body(dialect="tei")`.

Raw scores: with `raw_scores: true`, `score` IS the model's raw score (a logit for a
cross-encoder, the cosine for an embedding model); otherwise `score` is the [0, 1] relevance.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compat.documents import check_query, check_top_n, document_texts
from compat.model import RerankOutcome, RerankQuery, ranked_pairs

__all__ = ["TeiRerankRequest", "parse_tei", "render_tei"]


class TeiRerankRequest(BaseModel):
    """TEI body. Unknown fields are ignored, as TEI does; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    query: str
    texts: list[str]
    raw_scores: bool | None = None
    return_text: bool | None = None
    truncate: bool | None = None
    truncation_direction: Literal["Right", "Left", "right", "left", "RIGHT", "LEFT"] | None = None
    model: str | None = Field(None, description="Not in TEI; accepted for gateways that send it.")
    top_n: int | None = Field(None, description="Not in TEI; our extension.")
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")


def parse_tei(req: TeiRerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field (query, texts, texts[i], top_n)."""
    return RerankQuery(
        query=check_query(req.query),
        texts=document_texts(req.texts, param="texts"),
        originals=tuple(req.texts),
        model=req.model,
        top_n=check_top_n(req.top_n),
        return_documents=bool(req.return_text),
        instruction=req.instruction,
        raw_scores=bool(req.raw_scores),
        truncate=True if req.truncate is None else req.truncate,
    )


def render_tei(q: RerankQuery, out: RerankOutcome) -> list[dict[str, Any]]:
    """A bare array, best first. `score` is the raw score when asked for, else the relevance."""
    items: list[dict[str, Any]] = []
    if not (q.return_documents or q.raw_scores):  # the common answer: one dict display per result
        items = [{"index": index, "score": score} for index, score in ranked_pairs(out.items)]
    else:
        for item in out.items:
            score = item.raw_score if q.raw_scores and item.raw_score is not None else item.relevance_score
            r: dict[str, Any] = {"index": item.index, "score": score}
            if q.return_documents:
                r["text"] = q.texts[item.index]
            items.append(r)
    return items
