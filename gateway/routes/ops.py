"""Operational routes: health (with the configuration the origin guide reports) and models."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from engine import EngineSnapshot, EngineState
from gateway.deps import Runtime, RuntimeDep
from gateway.metrics import render_metrics

__all__ = ["router"]

router = APIRouter()
_STARTED = int(time.time())
_COMING = (EngineState.STARTING, EngineState.RESTARTING)


def _status(engines: tuple[EngineSnapshot, ...]) -> str:
    if any(e.ready for e in engines):
        return "ready"
    if any(e.state is EngineState.FAILED for e in engines) and not any(e.state in _COMING for e in engines):
        return "failed"
    return engines[0].state.value if engines else "starting"


def _engine_public(e: EngineSnapshot) -> dict[str, Any]:
    return {
        "name": e.name,
        "url": e.url,
        "state": e.state.value,
        "pid": e.pid,
        "restarts": e.restarts,
        "last_error": e.last_error,
        "family": e.family.name,
        "prompt_format": e.prompt_format,
        "gpu_memory_utilization": e.args.gpu_memory_utilization,
        "ready_since": e.ready_since,
        "args": e.args.model_dump(),
    }


_PRIVATE_ENGINE_FIELDS = ("url", "pid", "last_error")


def health_body(rt: Runtime, *, detailed: bool = True) -> tuple[int, dict[str, Any]]:
    """The health answer; without `detailed`, no paths, pids or engine addresses (a caller without
    the key of a service that has keys)."""
    engines = rt.registry.engines()
    settings = rt.settings
    status = _status(engines)
    # The origin guide's fields: what the engine runs with (pass-through flags included) once known.
    args = engines[0].args if engines else None
    body: dict[str, Any] = {
        "status": status,
        "model": rt.pipeline.served_name,
        "model_path": (engines[0].model if engines else None) or rt.topology.model,
        "family": engines[0].family.name if engines else None,
        "device": rt.topology.device,
        "max_num_seqs": args.max_num_seqs if args and args.max_num_seqs else settings.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens if args else settings.max_num_batched_tokens,
        "gpu_memory_utilization": args.gpu_memory_utilization if args else settings.gpu_memory_utilization,
        "tensor_parallel_size": args.tensor_parallel_size if args else settings.tensor_parallel_size,
        "max_workers": settings.max_workers,
        "workers": settings.workers,
        "model_size": settings.model_size,
        "engine": _engine_public(engines[0]) if engines else None,
        "engines": [_engine_public(e) for e in engines],
        "score_cache": {
            "enabled": rt.pipeline.cache.enabled,
            "entries": len(rt.pipeline.cache),
            "hits": rt.pipeline.cache.hits,
            "misses": rt.pipeline.cache.misses,
        },
        "inflight_pairs": rt.pipeline.admission.inflight,
        "max_inflight_pairs_per_worker": rt.pipeline.admission.limit,
    }
    if not detailed:
        body["model_path"] = None
        for engine in (body["engine"], *body["engines"]):
            if engine is not None:
                for key in _PRIVATE_ENGINE_FIELDS:
                    engine.pop(key, None)
    return (200 if status == "ready" else 503), body


@router.get("/health", operation_id="health")
@router.get("/v1/health", operation_id="health_v1", include_in_schema=False)
async def health(request: Request, rt: RuntimeDep) -> Response:
    # Engine addresses, pids and paths are for operators: behind the key when the service has keys
    # (with --protect-ops the middleware already asked for it).
    detailed = not rt.keys.enabled or rt.keys.check(request.headers.get("authorization"))
    status, body = health_body(rt, detailed=detailed)
    headers = {} if status == 200 else {"Retry-After": "5"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


@router.get("/v1/models", operation_id="list_models")
@router.get("/models", operation_id="list_models_bare", include_in_schema=False)
async def list_models(request: Request, rt: RuntimeDep) -> Response:
    served = rt.pipeline.served_name
    names = [served, *[a for a in rt.settings.model_aliases if a != served]]
    root = rt.topology.model if not rt.settings.engine_urls else None
    data = [
        {"id": n, "object": "model", "created": _STARTED, "owned_by": "vllm-rerank", "root": root or n} for n in names
    ]
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


@router.get("/metrics", operation_id="metrics")
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    text = render_metrics(rt.registry.engines(), await rt.engine_metrics.get())
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
