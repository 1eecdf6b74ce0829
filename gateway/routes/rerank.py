"""Rerank routes: parse (compat) → score (core pipeline) → render (compat). Nothing else.

| path | dialect |
| /v1/rerank | Voyage when the body has `top_k`/`truncation`, else the Cohere v1 / Jina superset |
| /v2/rerank | Cohere v2 (every shape SDKs have sent since 5.10) |
| /rerank | TEI when the body has `texts`, Pinecone by its header, else the Cohere v1 / Jina superset (vLLM, LiteLLM) |
| /score, /v1/score | vLLM score API |

A request's `model` picks the model that scores it (core.routing.ModelRouter).
The middleware has read and parsed the body (`state["json"]`) and decided the dialect
(`state["dialect"]`, compat.detect.dialect_of) before a route runs; errors raised here are
rendered in that dialect by gateway.errors.

Each path's whole work is one `Answer` (`ANSWERS`): the runtime and the request's ASGI state in,
the JSON body out. `GatewayMiddleware` calls it straight (gateway/middleware.py, the fast path:
no routing, dependency solving or exit stacks per request); the FastAPI routes below call the same
function, so the OpenAPI document describes these paths, and an app served without the middleware's
fast path answers the same bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.responses import Response

from compat import cohere, pinecone, score, tei, voyage
from compat.model import RerankOutcome, RerankQuery
from gateway.deps import Runtime, RuntimeDep
from gateway.openapi import documented

__all__ = ["ANSWERS", "Answer", "State", "answered", "router"]

router = APIRouter()

# A request's ASGI `scope["state"]`, filled by the middleware: json, dialect, request_id, stats.
State = dict[str, Any]
# A path's whole work: the JSON body of its 200 answer; an error is raised (gateway.errors renders it).
Answer = Callable[[Runtime, State], Awaitable[bytes]]


def answered(body: bytes) -> Response:
    """A route's 200: the same headers the middleware's fast path sends (content-length, content-type)."""
    return Response(body, media_type="application/json")


async def _rerank(
    rt: Runtime,
    state: State,
    wire: type[BaseModel],
    parse: Callable[[Any], RerankQuery],
    render: Callable[[RerankQuery, RerankOutcome], Any],
) -> bytes:
    """The whole of a rerank route: validate the dialect's wire model, parse, score, render."""
    stats = state["stats"]
    with stats.span("parse"):
        q = parse(wire.model_validate(state["json"]))
    out = await rt.router.route(q.model).rerank(q, request_id=state["request_id"], observer=stats)
    with stats.span("render"):
        return orjson.dumps(render(q, out))


async def _cohere_v1(rt: Runtime, state: State) -> bytes:
    return await _rerank(rt, state, cohere.CohereV1RerankRequest, cohere.parse_cohere_v1, cohere.render_cohere_v1)


async def _v1(rt: Runtime, state: State) -> bytes:
    if state["dialect"] == "voyage":
        return await _rerank(rt, state, voyage.VoyageRerankRequest, voyage.parse_voyage, voyage.render_voyage)
    return await _cohere_v1(rt, state)


async def _v2(rt: Runtime, state: State) -> bytes:
    return await _rerank(rt, state, cohere.CohereV2RerankRequest, cohere.parse_cohere_v2, cohere.render_cohere_v2)


async def _bare(rt: Runtime, state: State) -> bytes:
    if state["dialect"] == "tei":
        return await _rerank(rt, state, tei.TeiRerankRequest, tei.parse_tei, tei.render_tei)
    if state["dialect"] == "pinecone":
        return await _rerank(
            rt, state, pinecone.PineconeRerankRequest, pinecone.parse_pinecone, pinecone.render_pinecone
        )
    return await _cohere_v1(rt, state)


async def _score(rt: Runtime, state: State) -> bytes:
    """One pipeline request for all the query groups: --max-documents counts every pair, and one
    deadline and one admission ticket cover the whole HTTP request."""
    stats = state["stats"]
    with stats.span("parse"):
        plan = score.parse_score(score.ScoreRequest.model_validate(state["json"]))
    queries = [g.query for g in plan.groups]
    pipeline = rt.router.route(queries[0].model if queries else None)
    outcomes = await pipeline.rerank_many(queries, request_id=state["request_id"], observer=stats)
    with stats.span("render"):
        return orjson.dumps(score.render_score(plan, outcomes))


ANSWERS: dict[str, Answer] = {
    "/v1/rerank": _v1,
    "/v2/rerank": _v2,
    "/rerank": _bare,
    "/score": _score,
    "/v1/score": _score,
}


_V1 = (cohere.CohereV1RerankRequest, voyage.VoyageRerankRequest)
_BARE = (tei.TeiRerankRequest, pinecone.PineconeRerankRequest, cohere.CohereV1RerankRequest)


@router.post(
    "/v1/rerank",
    operation_id="rerank_v1",
    summary="Cohere v1 / Jina / Voyage rerank",
    description="Voyage when the body has `top_k` or `truncation`, else the Cohere v1 / Jina superset.",
    **documented(*_V1),
)
async def rerank_v1(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _v1(rt, request.scope["state"]))


@router.post(
    "/v2/rerank",
    operation_id="rerank_v2",
    summary="Cohere v2 rerank",
    **documented(cohere.CohereV2RerankRequest),
)
async def rerank_v2(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _v2(rt, request.scope["state"]))


@router.post(
    "/rerank",
    operation_id="rerank_tei",
    summary="TEI rerank, Pinecone, or the Cohere v1 / Jina superset",
    description="TEI when the body has `texts`; Pinecone when the request carries `X-Pinecone-API-Version`; "
    "else the Cohere v1 / Jina superset (vLLM, LiteLLM).",
    **documented(*_BARE),
)
async def rerank_bare(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _bare(rt, request.scope["state"]))


_SCORE = documented(score.ScoreRequest)


@router.post("/score", operation_id="score", summary="vLLM score API", **_SCORE)
@router.post("/v1/score", operation_id="score_v1", summary="vLLM score API (/v1 path)", **_SCORE)
async def score_pairs(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _score(rt, request.scope["state"]))
