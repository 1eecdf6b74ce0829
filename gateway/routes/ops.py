"""Operational routes: health (with the configuration the origin guide reports) and models."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from gateway.deps import RuntimeDep
from gateway.metrics import render_metrics

__all__ = ["router"]

router = APIRouter()
_STARTED = int(time.time())


def health_body(rt: Any) -> tuple[int, dict[str, Any]]:
    engines = rt.registry.engines()
    ready = [e for e in engines if e.ready]
    if ready:
        status = "ready"
    elif any(e.state == "failed" for e in engines) and not any(e.state in ("starting", "restarting") for e in engines):
        status = "failed"
    elif engines:
        status = engines[0].state
    else:
        status = "starting"
    body: dict[str, Any] = {
        "status": status,
        "model": rt.service.served_name,
        "model_path": (engines[0].raw.get("model") if engines else None) or rt.settings.resolved_model,
        "family": engines[0].family if engines else None,
        "device": rt.settings.resolved_device,
        **rt.settings.public(),
        "engine": _engine_public(engines[0].raw) if engines else None,
        "engines": [_engine_public(e.raw) for e in engines],
        "score_cache": {
            "enabled": rt.service.cache.enabled,
            "entries": len(rt.service.cache),
            "hits": rt.service.cache.hits,
            "misses": rt.service.cache.misses,
        },
        "inflight_pairs": rt.service.admission.inflight,
        "max_inflight_pairs_per_worker": rt.service.admission.limit,
    }
    return (200 if ready else 503), body


def _engine_public(raw: dict[str, Any]) -> dict[str, Any]:
    keep = (
        "name",
        "url",
        "state",
        "pid",
        "restarts",
        "last_error",
        "family",
        "prompt_format",
        "gpu_memory_utilization",
        "ready_since",
    )
    return {k: raw.get(k) for k in keep}


@router.get("/health", operation_id="health")
@router.get("/v1/health", operation_id="health_v1", include_in_schema=False)
async def health(request: Request, rt: RuntimeDep) -> Response:
    status, body = health_body(rt)
    headers = {} if status == 200 else {"Retry-After": "5"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.get("/v1/models", operation_id="list_models")
@router.get("/models", operation_id="list_models_bare", include_in_schema=False)
async def list_models(request: Request, rt: RuntimeDep) -> Response:
    names = [rt.service.served_name, *[a for a in rt.settings.model_aliases if a != rt.service.served_name]]
    data = [
        {
            "id": n,
            "object": "model",
            "created": _STARTED,
            "owned_by": "vllm-rerank",
            "root": rt.settings.resolved_model if not rt.settings.engine_urls else n,
        }
        for n in names
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/metrics", operation_id="metrics")
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    engines = [e.raw for e in rt.registry.engines()]
    text = render_metrics(engines, await rt.client.engine_metrics())
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
