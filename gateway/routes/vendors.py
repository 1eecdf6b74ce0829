"""Vendor dialects on their own paths: parse (compat) → score (core pipeline) → render (compat),
through routes/rerank.py's `_rerank`, as every rerank route.

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
from gateway.deps import RuntimeDep
from gateway.openapi import documented
from gateway.routes.rerank import _rerank

__all__ = ["router"]

router = APIRouter()


@router.post(
    "/v1/ranking",
    operation_id="ranking_nim",
    summary="NVIDIA NIM ranking",
    **documented(nim.NimRankingRequest),
)
async def ranking_nim(request: Request, rt: RuntimeDep) -> Response:
    return await _rerank(request, rt, nim.NimRankingRequest, nim.parse_nim, nim.render_nim)


@router.post(
    "/v1/reranking",
    operation_id="reranking_mixedbread",
    summary="Mixedbread reranking",
    **documented(mixedbread.MixedbreadRerankRequest),
)
async def reranking_mixedbread(request: Request, rt: RuntimeDep) -> Response:
    return await _rerank(
        request, rt, mixedbread.MixedbreadRerankRequest, mixedbread.parse_mixedbread, mixedbread.render_mixedbread
    )


@router.post(
    "/infinity/rerank",
    operation_id="rerank_infinity",
    summary="Infinity rerank (document as a string)",
    **documented(infinity.InfinityRerankRequest),
)
async def rerank_infinity(request: Request, rt: RuntimeDep) -> Response:
    return await _rerank(request, rt, infinity.InfinityRerankRequest, infinity.parse_infinity, infinity.render_infinity)
