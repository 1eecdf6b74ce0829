"""Rerank routes: parse (compat) → score (service) → render (compat). Nothing else.

| path | dialect |
| /v1/rerank | Voyage when the body has `top_k`/`truncation`, else the Cohere v1 / Jina superset |
| /v2/rerank | Cohere v2 (every shape SDKs have sent since 5.10) |
| /rerank | TEI when the body has `texts`, else the Cohere v1 / Jina superset (vLLM, Infinity, LiteLLM) |
| /score, /v1/score | vLLM score API |

`request.state.dialect` is set before the body is read, so that every error, including a body
that is not JSON, is rendered in the caller's dialect (gateway/errors.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from compat import cohere, score, tei, voyage
from compat.detect import detect_bare_rerank, detect_v1_rerank
from compat.model import RerankOutcome, RerankQuery
from gateway.body import read_json, validate
from gateway.deps import Runtime, RuntimeDep

__all__ = ["router"]

router = APIRouter()

# N:N score requests make one engine call per distinct query; this many run at once.
_SCORE_GROUP_CONCURRENCY = 8


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


async def _rerank(
    request: Request,
    rt: Runtime,
    data: dict[str, Any],
    *,
    dialect: str,
    wire: type[Any],
    parse: Callable[[Any], RerankQuery],
    render: Callable[[RerankQuery, RerankOutcome], Any],
) -> Response:
    """The whole of a rerank route: validate the dialect's wire model, parse, score, render."""
    request.state.dialect = dialect
    q = parse(validate(wire, data))
    out = await rt.service.rerank(q, request_id=request.state.request_id)
    return _json(render(q, out))


def _cohere_v1(request: Request, rt: Runtime, data: dict[str, Any]) -> Awaitable[Response]:
    return _rerank(
        request,
        rt,
        data,
        dialect="cohere",
        wire=cohere.CohereV1RerankRequest,
        parse=cohere.parse_cohere_v1,
        render=cohere.render_cohere_v1,
    )


@router.post("/v1/rerank", operation_id="rerank_v1", summary="Cohere v1 / Jina / Voyage rerank")
async def rerank_v1(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "cohere"
    data = await read_json(request)
    if detect_v1_rerank(data) == "voyage":
        return await _rerank(
            request,
            rt,
            data,
            dialect="voyage",
            wire=voyage.VoyageRerankRequest,
            parse=voyage.parse_voyage,
            render=voyage.render_voyage,
        )
    return await _cohere_v1(request, rt, data)


@router.post("/v2/rerank", operation_id="rerank_v2", summary="Cohere v2 rerank")
async def rerank_v2(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "cohere"
    data = await read_json(request)
    return await _rerank(
        request,
        rt,
        data,
        dialect="cohere",
        wire=cohere.CohereV2RerankRequest,
        parse=cohere.parse_cohere_v2,
        render=cohere.render_cohere_v2,
    )


@router.post("/rerank", operation_id="rerank_tei", summary="TEI rerank, or the Cohere v1 / Jina superset")
async def rerank_bare(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "cohere"
    data = await read_json(request)
    if detect_bare_rerank(data) == "tei":
        return await _rerank(
            request, rt, data, dialect="tei", wire=tei.TeiRerankRequest, parse=tei.parse_tei, render=tei.render_tei
        )
    return await _cohere_v1(request, rt, data)


@router.post("/score", operation_id="score", summary="vLLM score API")
@router.post("/v1/score", operation_id="score_v1", include_in_schema=False)
async def score_pairs(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "openai"
    data = await read_json(request)
    req = validate(score.ScoreRequest, data)
    plan = score.parse_score(req)
    rid = request.state.request_id
    gate = asyncio.Semaphore(_SCORE_GROUP_CONCURRENCY)

    async def one(q: RerankQuery) -> RerankOutcome:
        async with gate:
            return await rt.service.rerank(q, request_id=rid)

    outcomes = await asyncio.gather(*(one(g.query) for g in plan.groups))
    return _json(score.render_score(plan, outcomes))
