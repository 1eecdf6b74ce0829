"""Pinecone inference rerank (`POST /rerank` with the `X-Pinecone-Api-Version` header, the
`pinecone` SDK's `pc.inference.rerank`; compat.detect says how the path is shared).

Request: `model`, `query`, `documents` (objects; a string is taken as `{"text": ...}`, as the
SDK wraps it), `rank_fields` (default `["text"]`; one field ranks by its value, several by
`field: value` lines in order), `top_n` (null = all), `return_documents` (default **true**),
`parameters` (`truncate`: "END", the default, or "NONE": a pair longer than the model's window
is then an error, a 413 naming the limit). Response: `{"model", "data": [{"index", "score",
"document"?}], "usage": {"rerank_units"}}`, best first; `document` is the object as sent and
`score` the [0, 1] relevance. Errors: Pinecone's `{"error": {"code", "message"}, "status"}`
(`error_body`).

Raw scores: `raw_scores: true` (our extension) adds `raw_score` to each item of `data`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from compat.billing import billing
from compat.documents import check_query, check_top_n, document_texts
from compat.errors import CompatError
from compat.model import RerankOutcome, RerankQuery, result_dicts

__all__ = ["PINECONE_CODES", "PineconeRerankRequest", "error_body", "parse_pinecone", "render_pinecone"]


class PineconeRerankRequest(BaseModel):
    """Pinecone body. Unknown fields are accepted and ignored; null means "not given"."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    query: str
    documents: list[str | dict[str, Any]]
    rank_fields: list[str] | None = None
    top_n: int | None = None
    return_documents: bool | None = None
    parameters: dict[str, Any] | None = None
    instruction: str | None = Field(None, description="Task instruction for LLM rerankers (Qwen3).")
    raw_scores: bool | None = Field(None, description="Also return the model's raw score per result.")


def _as_object(doc: str | dict[str, Any]) -> dict[str, Any]:
    return doc if isinstance(doc, dict) else {"text": doc}


def _texts(documents: Sequence[dict[str, Any]], fields: Sequence[str]) -> tuple[str, ...]:
    """One field: its value is the text. Several: `field: value` lines (compat.documents)."""
    if len(fields) > 1:
        return document_texts(documents, rank_fields=fields)
    (name,) = fields
    values: list[str] = []
    for i, doc in enumerate(documents):
        value = doc.get(name)
        if not isinstance(value, str):
            what = "has no field" if value is None else "has a non-string field"
            raise CompatError(
                f"invalid request: document at index {i} {what} {name!r} named in rank_fields",
                param=f"documents[{i}]",
            )
        values.append(value)
    return document_texts(values)


def _truncate(parameters: dict[str, Any] | None) -> bool:
    value = (parameters or {}).get("truncate", "END")
    if value not in ("END", "NONE"):
        raise CompatError(
            f"invalid request: parameters.truncate must be END or NONE, got {value!r}", param="parameters.truncate"
        )
    return bool(value == "END")


def parse_pinecone(req: PineconeRerankRequest) -> RerankQuery:
    """Raises: CompatError naming the offending field (query, documents[i], rank_fields, top_n,
    parameters.truncate)."""
    documents = [_as_object(d) for d in req.documents]
    fields = req.rank_fields or ["text"]
    if not documents:
        raise CompatError("invalid request: list of documents must not be empty", param="documents")
    return RerankQuery(
        query=check_query(req.query),
        texts=_texts(documents, fields),
        originals=tuple(documents),
        model=req.model,
        top_n=check_top_n(req.top_n),
        return_documents=req.return_documents is not False,
        instruction=req.instruction,
        raw_scores=bool(req.raw_scores),
        truncate=_truncate(req.parameters),
    )


def render_pinecone(q: RerankQuery, out: RerankOutcome) -> dict[str, Any]:
    data = result_dicts(q, out, score="score", documents=q.originals)
    return {"model": out.model, "data": data, "usage": {"rerank_units": billing(q, out).search_units}}


# HTTP status → Pinecone's error code (the spec's ErrorResponse.error.code values).
PINECONE_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    413: "OUT_OF_RANGE",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(*, status: int, message: str, request_id: str, param: str | None = None) -> dict[str, Any]:
    """Pinecone's ErrorResponse; `details` (free-form in the spec) carries the field and request id."""
    code = PINECONE_CODES.get(status, "INVALID_ARGUMENT" if status < 500 else "UNKNOWN")
    details = {"param": param, "request_id": request_id}
    return {"error": {"code": code, "message": message, "details": details}, "status": status}
