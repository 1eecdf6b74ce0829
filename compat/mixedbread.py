"""Mixedbread `POST /v1/reranking` (the `mixedbread` SDK's `client.rerank`).

Request: `model`, `query`, `input` (strings or objects), `rank_fields` (the object fields to
rank by, in order), `top_k` (null = all), `return_input` (default false), `rewrite_query`
(accepted; queries are never rewritten here). Response: `{"object": "list", "data": [{"index",
"score", "object": "rank_result", "input"?}], "model", "usage": {"prompt_tokens",
"total_tokens", "completion_tokens"}, "top_k", "return_input"}`, best first; `input` is the
document as sent. `score` is the [0, 1] relevance. Mixedbread publishes no error schema and its
SDK keeps any JSON body: errors use the superset envelope.

Raw scores: `raw_scores: true` (our extension) adds `raw_score` to each item of `data`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compat.billing import billing
from compat.documents import check_query, check_top_n, document_texts
from compat.model import RerankOutcome, RerankQuery

__all__ = ["MixedbreadRerankRequest", "parse_mixedbread", "render_mixedbread"]


class MixedbreadRerankRequest(BaseModel):
    """Mixedbread body. Unknown fields are accepted and ignored; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    query: str
    input: list[str | dict[str, Any]]
    rank_fields: list[str] | None = None
    top_k: int | None = None
    return_input: bool | None = None
    rewrite_query: bool | None = None
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")
    raw_scores: bool | None = Field(None, description="Also return the model's raw score per result.")


def parse_mixedbread(req: MixedbreadRerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field (query, input, input[i], top_k)."""
    return RerankQuery(
        query=check_query(req.query),
        texts=document_texts(req.input, rank_fields=req.rank_fields or None, param="input"),
        originals=tuple(req.input),
        model=req.model,
        top_n=check_top_n(req.top_k, param="top_k"),
        return_documents=bool(req.return_input),
        instruction=req.instruction,
        raw_scores=bool(req.raw_scores),
    )


def render_mixedbread(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    for item in out.items:
        d: dict[str, Any] = {"index": item.index, "score": item.relevance_score, "object": "rank_result"}
        if q.return_documents:
            d["input"] = q.originals[item.index]
        if q.raw_scores and item.raw_score is not None:
            d["raw_score"] = item.raw_score
        data.append(d)
    tokens = billing(q, out).tokens
    return {
        "object": "list",
        "data": data,
        "model": out.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
        "top_k": q.top_n if q.top_n is not None else len(q.texts),
        "return_input": q.return_documents,
    }
