"""NVIDIA NIM (NeMo Retriever reranking) `POST /v1/ranking`.

Request: `model`, `query: {"text"}`, `passages: [{"text"}]`, `truncate` ("NONE" or "END"; the
NIM container's default is "NONE": a query + passage pair longer than the model's window is an
error, here a 413 that names the limit). Response: `{"rankings": [{"index", "logit"}], "usage":
{"prompt_tokens", "total_tokens"}}`, every passage, best first (NIM has no top_n).

Scores: `logit` is the model's raw score, as NIM's: the logit of a cross-encoder or LLM
reranker, the cosine of an embedding model. NVIDIA's clients (LangChain `NVIDIARerank`,
LiteLLM `nvidia_nim`) report it as the relevance score unchanged; it orders as the [0, 1]
relevance the other dialects report. Errors use the superset envelope, whose `detail` NVIDIA's
clients read.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compat.billing import billing
from compat.documents import check_query, document_texts
from compat.model import RerankOutcome, RerankQuery

__all__ = ["NimRankingRequest", "NimText", "parse_nim", "render_nim"]


class NimText(BaseModel):
    """A query or passage. Other fields (a VLM passage's `image`) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    text: str


class NimRankingRequest(BaseModel):
    """NIM ranking body. Unknown fields are accepted and ignored; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    query: NimText
    passages: list[NimText]
    truncate: Literal["NONE", "END"] | None = None
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")


def parse_nim(req: NimRankingRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field (query.text, passages, passages[i])."""
    texts = document_texts([p.text for p in req.passages], param="passages")
    return RerankQuery(
        query=check_query(req.query.text, param="query.text"),
        texts=texts,
        originals=texts,
        model=req.model,
        raw_scores=True,  # `logit` is the raw score
        instruction=req.instruction,
        truncate=req.truncate == "END",
    )


def render_nim(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    rankings = [
        {"index": item.index, "logit": item.raw_score if item.raw_score is not None else item.relevance_score}
        for item in out.items
    ]
    tokens = billing(q, out).tokens
    return {"rankings": rankings, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
