"""Voyage AI rerank (`/v1/rerank`, detected from the body by `top_k` / `truncation`).

Request: `query`, `documents` (strings), `model`, `top_k` (null = all), `truncation` (default
true), `return_documents` (default false). Response: `{"object": "list", "data": [{index,
relevance_score, document?}], "model", "usage": {"total_tokens"}}` where `document` is a plain
string, never an object and never null.

Raw scores: `raw_scores: true` (our extension) adds `raw_score` to each item of `data`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compat.documents import check_query, check_top_n, document_texts
from compat.model import RerankOutcome, RerankQuery, result_dicts

__all__ = ["VoyageRerankRequest", "parse_voyage", "render_voyage"]


class VoyageRerankRequest(BaseModel):
    """Voyage body. Unknown fields are accepted and ignored; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    query: str
    documents: list[str]
    top_k: int | None = None
    truncation: bool | None = None
    return_documents: bool | None = None
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")
    raw_scores: bool | None = Field(None, description="Also return the model's raw score per result.")


def parse_voyage(req: VoyageRerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field (query, documents[i], top_k)."""
    return RerankQuery(
        query=check_query(req.query),
        texts=document_texts(req.documents),
        originals=tuple(req.documents),
        model=req.model,
        top_n=check_top_n(req.top_k, param="top_k"),
        return_documents=bool(req.return_documents),
        instruction=req.instruction,
        raw_scores=bool(req.raw_scores),
        truncate=True if req.truncation is None else req.truncation,
    )


def render_voyage(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    data = result_dicts(q, out, score="relevance_score", documents=q.texts)
    return {"object": "list", "data": data, "model": out.model, "usage": {"total_tokens": out.prompt_tokens}}
