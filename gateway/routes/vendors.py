"""Vendor dialects on their own paths: parse (compat) → score (core pipeline) → render (compat),
through routes/rerank.py's `_rerank`, as every rerank route; `ANSWERS` as routes/rerank.py's.

| path | dialect |
| /v1/ranking | NVIDIA NIM (compat.nim) |
| /v1/reranking | Mixedbread (compat.mixedbread) |
| /infinity/rerank | Infinity clients, e.g. LiteLLM's infinity provider (compat.infinity) |

Pinecone shares `/rerank` (routes/rerank.py; compat.detect decides it from the header).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from compat import infinity, mixedbread, nim
from gateway.deps import Runtime, RuntimeDep
from gateway.openapi import documented
from gateway.routes.rerank import Answer, State, _rerank, answered

__all__ = ["ANSWERS", "router"]

router = APIRouter()


async def _nim(rt: Runtime, state: State) -> bytes:
    return await _rerank(rt, state, nim.NimRankingRequest, nim.parse_nim, nim.render_nim)


async def _mixedbread(rt: Runtime, state: State) -> bytes:
    return await _rerank(
        rt, state, mixedbread.MixedbreadRerankRequest, mixedbread.parse_mixedbread, mixedbread.render_mixedbread
    )


async def _infinity(rt: Runtime, state: State) -> bytes:
    return await _rerank(rt, state, infinity.InfinityRerankRequest, infinity.parse_infinity, infinity.render_infinity)


ANSWERS: dict[str, Answer] = {"/v1/ranking": _nim, "/v1/reranking": _mixedbread, "/infinity/rerank": _infinity}


@router.post(
    "/v1/ranking",
    operation_id="ranking_nim",
    summary="NVIDIA NIM ranking",
    **documented(nim.NimRankingRequest),
)
async def ranking_nim(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _nim(rt, request.scope["state"]))


@router.post(
    "/v1/reranking",
    operation_id="reranking_mixedbread",
    summary="Mixedbread reranking",
    **documented(mixedbread.MixedbreadRerankRequest),
)
async def reranking_mixedbread(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _mixedbread(rt, request.scope["state"]))


@router.post(
    "/infinity/rerank",
    operation_id="rerank_infinity",
    summary="Infinity rerank (document as a string)",
    **documented(infinity.InfinityRerankRequest),
)
async def rerank_infinity(request: Request, rt: RuntimeDep) -> Response:
    return answered(await _infinity(rt, request.scope["state"]))
