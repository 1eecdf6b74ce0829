"""Cohere rerank v1 (`/v1/rerank`, shared with Jina) and v2 (`/v2/rerank`).

v1 responses are a superset that Cohere's SDK and every Jina client read: `id`, `results`,
`meta` (Cohere) plus `model` and `usage` (Jina). JSON null for an optional field means "not
given". Unknown fields are accepted and ignored.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compat.billing import billing
from compat.documents import check_positive, check_query, check_top_n, document_texts
from compat.errors import CompatError
from compat.model import RankedItem, RerankOutcome, RerankQuery, ranked_pairs

__all__ = [
    "COHERE_V2_MAX_TOKENS_PER_DOC",
    "CohereV1RerankRequest",
    "CohereV2RerankRequest",
    "parse_cohere_v1",
    "parse_cohere_v2",
    "render_cohere_v1",
    "render_cohere_v2",
]

COHERE_V2_MAX_TOKENS_PER_DOC = 4096


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    query: str
    documents: list[str | dict[str, Any]]
    top_n: int | None = None
    return_documents: bool | None = None
    rank_fields: list[str] | None = None
    max_chunks_per_doc: int | None = None
    max_tokens_per_doc: int | None = None
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")
    raw_scores: bool | None = Field(None, description="Also return the model's raw score per result.")
    priority: int | None = None


class CohereV1RerankRequest(_Request):
    """Cohere v1 / Jina body."""


class CohereV2RerankRequest(_Request):
    """Cohere v2 body, in every shape SDKs have sent since 5.10."""


def _parse(req: _Request, *, default_max_tokens: int | None) -> RerankQuery:
    query = check_query(req.query)
    texts = document_texts(req.documents, rank_fields=req.rank_fields or None)
    top_n = check_top_n(req.top_n)
    chunks = check_positive(req.max_chunks_per_doc, param="max_chunks_per_doc")
    max_tokens = check_positive(req.max_tokens_per_doc, param="max_tokens_per_doc")
    if chunks is not None and len(texts) * chunks > 10_000:
        raise CompatError(
            "invalid request: number of total max chunks (number of documents * max chunks per doc) "
            "must be less than 10000",
            param="max_chunks_per_doc",
        )
    if req.priority is not None and not 0 <= req.priority <= 999:
        raise CompatError("invalid request: priority must be between 0 and 999", param="priority")
    return RerankQuery(
        query=query,
        texts=texts,
        originals=tuple(req.documents),
        model=req.model,
        top_n=top_n,
        return_documents=bool(req.return_documents),
        max_tokens_per_doc=max_tokens if max_tokens is not None else default_max_tokens,
        max_chunks_per_doc=chunks,
        instruction=req.instruction,
        raw_scores=bool(req.raw_scores),
    )


def parse_cohere_v1(req: CohereV1RerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field."""
    return _parse(req, default_max_tokens=None)


def parse_cohere_v2(req: CohereV2RerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field."""
    return _parse(req, default_max_tokens=COHERE_V2_MAX_TOKENS_PER_DOC)


def _document(original: object) -> object:
    return original if isinstance(original, dict) else {"text": original}


def _result(q: RerankQuery, item: RankedItem) -> dict[str, Any]:
    r: dict[str, Any] = {"index": item.index, "relevance_score": item.relevance_score}
    if q.return_documents:
        r["document"] = _document(q.originals[item.index])
    if q.raw_scores and item.raw_score is not None:
        r["raw_score"] = item.raw_score
    return r


def _render(q: RerankQuery, out: RerankOutcome, version: str) -> dict[str, Any]:
    results: list[dict[str, Any]]
    if q.return_documents or q.raw_scores:
        results = [_result(q, item) for item in out.items]
    else:  # the common answer: one dict display per result, no call
        results = [{"index": index, "relevance_score": score} for index, score in ranked_pairs(out.items)]
    bill = billing(q, out)
    meta: dict[str, Any] = {
        "api_version": {"version": version},
        "billed_units": {"search_units": bill.search_units},
        "tokens": {"input_tokens": bill.tokens, "output_tokens": 0},
    }
    if out.warnings:
        meta["warnings"] = list(out.warnings)
    return {
        "id": out.request_id,
        "results": results,
        "meta": meta,
        "model": out.model,
        "usage": {"total_tokens": bill.tokens, "prompt_tokens": bill.tokens},
    }


def render_cohere_v1(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    """Cohere v1 + Jina superset. `document` is omitted (never null) unless asked for."""
    return _render(q, out, "1")


def render_cohere_v2(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    return _render(q, out, "2")
