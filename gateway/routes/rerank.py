"""Rerank routes: parse (compat) → score (service) → render (compat). Nothing else."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from compat import cohere
from gateway.body import read_json, validate
from gateway.deps import RuntimeDep

__all__ = ["router"]

router = APIRouter()


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


@router.post("/v1/rerank", operation_id="rerank_v1", summary="Cohere v1 / Jina rerank")
async def rerank_v1(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "cohere"
    data = await read_json(request)
    req = validate(cohere.CohereV1RerankRequest, data)
    q = cohere.parse_cohere_v1(req)
    out = await rt.service.rerank(q, request_id=request.state.request_id)
    return _json(cohere.render_cohere_v1(q, out))


@router.post("/v2/rerank", operation_id="rerank_v2", summary="Cohere v2 rerank")
async def rerank_v2(request: Request, rt: RuntimeDep) -> Response:
    request.state.dialect = "cohere"
    data = await read_json(request)
    req = validate(cohere.CohereV2RerankRequest, data)
    q = cohere.parse_cohere_v2(req)
    out = await rt.service.rerank(q, request_id=request.state.request_id)
    return _json(cohere.render_cohere_v2(q, out))
