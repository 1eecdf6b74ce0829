"""Infinity (`infinity_emb`) rerank, for Infinity clients: `POST /infinity/rerank` (compat.detect
says why Infinity needs its own prefix; LiteLLM: `api_base=".../infinity"`).

Request: Infinity's `RerankInput`, `query`, `documents`, `top_n` (null = all),
`return_documents` (default false), `raw_scores` (default false), `model`; the Cohere v1 / Jina
superset is accepted too (object documents with `rank_fields`), as LiteLLM's provider forwards
them. Response: Infinity's `ReRankResult`, `{"object": "rerank", "results": [{"relevance_score",
"index", "document"?}], "model", "usage": {"prompt_tokens", "total_tokens"}, "id", "created"}`,
best first, where **`document` is the scored text as a plain string** (LiteLLM's infinity
provider reads it as `document.text`: an object there fails its validation). Errors use the
superset envelope, whose `error{message,type,param,code}` is Infinity's OpenAI-style one.

Raw scores: with `raw_scores: true`, `relevance_score` IS the raw score (Infinity: no sigmoid).
"""

from __future__ import annotations

import time
from typing import Any

from compat.billing import billing
from compat.cohere import CohereV1RerankRequest, parse_cohere_v1
from compat.model import RerankOutcome, RerankQuery

__all__ = ["InfinityRerankRequest", "parse_infinity", "render_infinity"]


class InfinityRerankRequest(CohereV1RerankRequest):
    """Infinity's RerankInput, within the Cohere v1 / Jina superset."""


def parse_infinity(req: InfinityRerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field."""
    return parse_cohere_v1(req)


def render_infinity(q: RerankQuery, out: RerankOutcome, *, created: int | None = None) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for item in out.items:
        score = item.raw_score if q.raw_scores and item.raw_score is not None else item.relevance_score
        r: dict[str, Any] = {"relevance_score": score, "index": item.index}
        if q.return_documents:
            r["document"] = q.texts[item.index]
        results.append(r)
    tokens = billing(q, out).tokens
    return {
        "object": "rerank",
        "results": results,
        "model": out.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "id": out.request_id,
        "created": int(time.time()) if created is None else created,
    }
