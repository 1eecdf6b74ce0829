"""The OpenAPI document: every route's request body per dialect, its responses and its error envelopes.

The rerank routes read the body the middleware parsed once (`request.state.json`) and decide the
dialect from it, so FastAPI never sees their pydantic models. They are declared here instead:
- request bodies: the dialect's wire model from compat/, as a `oneOf` where one path takes several
  dialects (e.g. /rerank: TEI, Pinecone, or the Cohere v1 / Jina superset), with an example each;
- responses: the shape of what the dialect's `render_*` function answers, read from a real render
  of a sample result (so the documented shape is the one sent), with that render as the example;
- errors: the envelope of the path's dialect (TEI's, Pinecone's, or the Cohere superset).

`install(app)` puts the models' JSON schemas under `components/schemas` of the app's document.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from compat import cohere, infinity, mixedbread, nim, pinecone, score, tei, voyage
from compat.errors import error_body
from compat.model import RankedItem, RerankOutcome, RerankQuery

__all__ = ["DIALECT_BODIES", "documented", "error_responses", "install", "request_body", "responses", "schema_of"]

_REF = "#/components/schemas/{model}"


@dataclass(frozen=True)
class Dialect:
    name: str  # shown in the docs
    wire: type[BaseModel]
    example: dict[str, Any]
    response: str  # the response schema's name
    render: Callable[[RerankQuery, RerankOutcome], Any]
    errors: str = "ErrorResponse"


_Q = "What is the capital of France?"
_DOCS = ["Paris is the capital of France.", "Berlin is the capital of Germany."]

DIALECT_BODIES: dict[str, Dialect] = {
    d.wire.__name__: d
    for d in (
        Dialect(
            "Cohere v1 / Jina",
            cohere.CohereV1RerankRequest,
            {"model": "rerank-english-v3.0", "query": _Q, "documents": _DOCS, "top_n": 2, "return_documents": True},
            "CohereV1RerankResponse",
            cohere.render_cohere_v1,
        ),
        Dialect(
            "Cohere v2",
            cohere.CohereV2RerankRequest,
            {"model": "rerank-v3.5", "query": _Q, "documents": _DOCS, "top_n": 2},
            "CohereV2RerankResponse",
            cohere.render_cohere_v2,
        ),
        Dialect(
            "Voyage (top_k / truncation)",
            voyage.VoyageRerankRequest,
            {"model": "rerank-2", "query": _Q, "documents": _DOCS, "top_k": 2, "truncation": True},
            "VoyageRerankResponse",
            voyage.render_voyage,
        ),
        Dialect(
            "TEI (texts)",
            tei.TeiRerankRequest,
            {"query": _Q, "texts": _DOCS, "raw_scores": False, "return_text": True},
            "TeiRerankResponse",
            tei.render_tei,
            "TeiErrorResponse",
        ),
        Dialect(
            "Pinecone (X-Pinecone-API-Version header)",
            pinecone.PineconeRerankRequest,
            {"model": "bge-reranker-v2-m3", "query": _Q, "documents": [{"text": d} for d in _DOCS], "top_n": 2},
            "PineconeRerankResponse",
            pinecone.render_pinecone,
            "PineconeErrorResponse",
        ),
        Dialect(
            "vLLM score",
            score.ScoreRequest,
            {"model": "m", "text_1": _Q, "text_2": _DOCS},
            "ScoreResponse",
            lambda q, out: score.render_score(
                score.parse_score(score.ScoreRequest(text_1=_Q, text_2=_DOCS)), [out], created=1700000000
            ),
        ),
        Dialect(
            "NVIDIA NIM",
            nim.NimRankingRequest,
            {
                "model": "nvidia/nv-rerankqa-mistral-4b-v3",
                "query": {"text": _Q},
                "passages": [{"text": d} for d in _DOCS],
            },
            "NimRankingResponse",
            nim.render_nim,
        ),
        Dialect(
            "Mixedbread",
            mixedbread.MixedbreadRerankRequest,
            {"model": "mixedbread-ai/mxbai-rerank-large-v1", "query": _Q, "input": _DOCS, "top_k": 2},
            "MixedbreadRerankResponse",
            mixedbread.render_mixedbread,
        ),
        Dialect(
            "Infinity (document as a string)",
            infinity.InfinityRerankRequest,
            {"model": "m", "query": _Q, "documents": _DOCS, "return_documents": True},
            "InfinityRerankResponse",
            lambda q, out: infinity.render_infinity(q, out, created=1700000000),
        ),
    )
}

# The status codes a scoring route answers, and why.
_ERRORS = {
    400: "The body is not a JSON object, nests too deep, or a field is out of range (the message names it)",
    401: "No key, or a wrong one (when the service has keys)",
    404: "A model that is not served (--strict-model-names)",
    408: "The body did not arrive within --body-timeout",
    413: "The body is larger than --max-body-bytes, or a text longer than the model takes with truncation off",
    422: "The body does not match the dialect's fields",
    429: "Too many (query, document) pairs in flight; retry after Retry-After seconds",
    503: "No engine ready (starting, restarting) or the service is stopping; retry after Retry-After seconds",
    504: "The request ran past --request-timeout",
}


def schema_of(value: Any) -> dict[str, Any]:
    """A JSON schema for the shape of a JSON value (what a render function answers)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer"}
    if isinstance(value, float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, (list, tuple)):
        return {"type": "array", "items": schema_of(value[0]) if value else {}}
    if isinstance(value, dict):
        return {"type": "object", "properties": {str(k): schema_of(v) for k, v in value.items()}}
    return {}  # null: any value may stand here


def _sample() -> tuple[RerankQuery, RerankOutcome]:
    q = RerankQuery(query=_Q, texts=tuple(_DOCS), originals=tuple(_DOCS), return_documents=True, raw_scores=True)
    items = (RankedItem(0, 0.9912, 4.71), RankedItem(1, 0.0154, -4.16))
    return q, RerankOutcome(items=items, model="m", prompt_tokens=38, request_id="3f2b6c1e9a7d4e0f8b5a2c1d0e9f8a7b")


def _response_schemas() -> dict[str, dict[str, Any]]:
    q, out = _sample()
    schemas: dict[str, dict[str, Any]] = {}
    for d in DIALECT_BODIES.values():
        example = d.render(q, out)
        schemas[d.response] = {**schema_of(example), "title": d.response, "example": example}
    for name, dialect in (("ErrorResponse", "cohere"), ("TeiErrorResponse", "tei")):
        example = error_body(dialect=dialect, status=400, message="invalid request: query is empty", request_id="r1")
        schemas[name] = {**schema_of(example), "title": name, "example": example}
    example = pinecone.error_body(status=400, message="invalid request: query is empty", request_id="r1")
    schemas["PineconeErrorResponse"] = {**schema_of(example), "title": "PineconeErrorResponse", "example": example}
    return schemas


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _one_of(names: Sequence[str]) -> dict[str, Any]:
    return _ref(names[0]) if len(names) == 1 else {"oneOf": [_ref(n) for n in names]}


def request_body(*wires: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route whose body is one of these dialects (first: the default one)."""
    dialects = [DIALECT_BODIES[w.__name__] for w in wires]
    examples = {d.wire.__name__: {"summary": d.name, "value": d.example} for d in dialects}
    return {
        "requestBody": {
            "required": True,
            "description": "One of: " + "; ".join(f"{d.name} ({d.wire.__name__})" for d in dialects),
            "content": {
                "application/json": {"schema": _one_of([d.wire.__name__ for d in dialects]), "examples": examples}
            },
        }
    }


def error_responses(*envelopes: str) -> dict[int | str, dict[str, Any]]:
    """Every error status a scoring route answers, in the envelope(s) of its dialects."""
    schema = _one_of(list(dict.fromkeys(envelopes)))
    return {
        status: {"description": why, "content": {"application/json": {"schema": schema}}}
        for status, why in _ERRORS.items()
    }


def responses(*wires: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """`responses` of a scoring route: its dialects' answers (200) and errors."""
    dialects = [DIALECT_BODIES[w.__name__] for w in wires]
    ok = {
        "description": "Ranked results, best first, in the dialect of the request. Timing headers as TEI's.",
        "headers": {
            name: {"description": why, "schema": {"type": "integer"}}
            for name, why in (
                ("x-total-time", "ms in the gateway (x-compute-time: the same, as TEI)"),
                ("x-tokenization-time", "ms of the gateway's tokenizer work"),
                ("x-queue-time", "ms before the first engine call, tokenization excepted"),
                ("x-inference-time", "ms from the first engine call to the last answer"),
                ("x-compute-tokens", "prompt tokens the engine counted"),
            )
        },
        "content": {"application/json": {"schema": _one_of([d.response for d in dialects])}},
    }
    return {200: ok, **error_responses(*(d.errors for d in dialects))}


def documented(*wires: type[BaseModel]) -> dict[str, Any]:
    """The route decorator's arguments for a scoring route taking these dialects (first: the default)."""
    return {"openapi_extra": request_body(*wires), "responses": responses(*wires), "tags": ["rerank"]}


def install(app: FastAPI) -> None:
    """The app's document (built once, on first request) with the dialects' schemas in its components."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            _, defs = models_json_schema([(d.wire, "validation") for d in DIALECT_BODIES.values()], ref_template=_REF)
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            components.update(defs.get("$defs", {}))
            components.update(_response_schemas())
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
