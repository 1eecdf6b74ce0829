"""Operational routes: health (with the configuration the origin guide reports), models, info (TEI's
/info: models, version, limits and formats) and metrics."""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import PlainTextResponse, Response

from compat.errors import UnknownModelError
from core import RerankPipeline
from engine import EngineSnapshot, EngineState
from engine.formats import FORMATS
from gateway.deps import Runtime, RuntimeDep
from gateway.metrics import render_metrics
from gateway.openapi import DIALECT_BODIES
from gateway.topology import ModelPlan
from gateway.version import VERSION

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
        "model": e.served_model_name,
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


def _model_health(pipeline: RerankPipeline, plan: ModelPlan | None, *, detailed: bool) -> dict[str, Any]:
    engines = pipeline.engines.engines()
    shares = [e.args.gpu_memory_utilization for e in engines]
    return {
        "status": _status(engines),
        "aliases": list(pipeline.policy.aliases),
        "model_path": ((engines[0].model if engines else None) or (plan.spec.model if plan else None))
        if detailed
        else None,
        "family": engines[0].family.name if engines else (plan.family.name if plan else None),
        "format": engines[0].format if engines else (plan.info.format.name if plan else None),
        "engines": [e.name for e in engines],
        "engines_ready": sum(1 for e in engines if e.ready),
        # the model's planned share of GPU memory: its engines' together (None: vLLM's default)
        "gpu_memory_utilization": round(sum(x for x in shares if x), 3) if any(shares) else None,
        "score_cache": {
            "enabled": pipeline.cache.enabled,
            "entries": len(pipeline.cache),
            "hits": pipeline.cache.hits,
            "misses": pipeline.cache.misses,
        },
        "inflight_pairs": pipeline.admission.inflight,
        "max_inflight_pairs_per_worker": pipeline.admission.limit,
    }


def health_body(rt: Runtime, *, detailed: bool = True, model: str | None = None) -> tuple[int, dict[str, Any]]:
    """The health answer: 200 when every model has a ready engine (or, with `model`, that model).
    Without `detailed`, no paths, pids or engine addresses (a caller without the key of a service
    that has keys).

    Raises: UnknownModelError for a `model` that is not served."""
    plans = {p.name: p for p in rt.topology.models}
    models = {p.served_name: _model_health(p, plans.get(p.served_name), detailed=detailed) for p in rt.router.pipelines}
    if model is not None:
        chosen = rt.router.find(model)
        if chosen is None:
            raise UnknownModelError(model, sorted(rt.router.names()))
        one = {"model": chosen.served_name, **models[chosen.served_name]}
        return (200 if one["status"] == "ready" else 503), one
    engines = rt.registry.engines()
    settings = rt.settings
    first = models[rt.pipeline.served_name]
    statuses = [m["status"] for m in models.values()]
    if all(s == "ready" for s in statuses):
        status = "ready"
    elif "ready" in statuses:
        status = "degraded"  # some models serve, others do not
    else:
        status = _status(engines)
    # The origin guide's fields (the first model's): what the engine runs with (pass-through flags
    # included) once known.
    own = [e for e in engines if e.served_model_name == rt.pipeline.served_name] or list(engines)
    args = own[0].args if own else None
    body: dict[str, Any] = {
        "status": status,
        "model": rt.pipeline.served_name,
        "model_path": first["model_path"],
        "family": first["family"],
        "device": rt.topology.device,
        "max_num_seqs": args.max_num_seqs if args and args.max_num_seqs else settings.max_num_seqs,
        "max_num_batched_tokens": args.max_num_batched_tokens if args else settings.max_num_batched_tokens,
        "gpu_memory_utilization": args.gpu_memory_utilization if args else settings.gpu_memory_utilization,
        "tensor_parallel_size": args.tensor_parallel_size if args else settings.tensor_parallel_size,
        "max_workers": settings.max_workers,
        "workers": rt.topology.workers,  # resolved: --workers, else sized from the engines and cores
        "mps": settings.mps,  # resolved by start_service.py: on (the engines share a private MPS daemon) or off
        "model_size": settings.model_size,
        "engine": _engine_public(own[0]) if own else None,
        "engines": [_engine_public(e) for e in engines],
        "models": models,
        "score_cache": first["score_cache"],
        "inflight_pairs": first["inflight_pairs"],
        "max_inflight_pairs_per_worker": first["max_inflight_pairs_per_worker"],
    }
    if not detailed:
        for engine in (body["engine"], *body["engines"]):
            if engine is not None:
                for key in _PRIVATE_ENGINE_FIELDS:
                    engine.pop(key, None)
    return (200 if status == "ready" else 503), body


_HEALTH: dict[str, Any] = {
    "tags": ["operations"],
    "responses": {
        200: {
            "description": "Every model (or the one asked about) has a ready engine",
            "content": {"application/json": {"example": {"status": "ready", "model": "all-MiniLM-L6-v2"}}},
        },
        503: {
            "description": "Not ready (starting, restarting, failed; `degraded`: some models are); Retry-After: 5",
            "content": {"application/json": {"example": {"status": "starting", "model": "all-MiniLM-L6-v2"}}},
        },
    },
}


@router.get("/health", operation_id="health", summary="Readiness (200 ready, 503 not)", **_HEALTH)
@router.get("/v1/health", operation_id="health_v1", summary="Readiness (/v1 path)", **_HEALTH)
async def health(request: Request, rt: RuntimeDep, model: str | None = None) -> Response:
    """200 when every model is ready, else 503 + Retry-After; `?model=NAME` asks about one model."""
    # Engine addresses, pids and paths are for operators: behind the key when the service has keys
    # (with --protect-ops the middleware already asked for it).
    detailed = not rt.keys.enabled or rt.keys.check(request.headers.get("authorization"))
    status, body = health_body(rt, detailed=detailed, model=model)
    headers = {} if status == 200 else {"Retry-After": "5"}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json", headers=headers)


_MODELS: dict[str, Any] = {
    "tags": ["operations"],
    "responses": {
        200: {
            "description": "OpenAI's model list",
            "content": {
                "application/json": {
                    "example": {
                        "object": "list",
                        "data": [
                            {
                                "id": "all-MiniLM-L6-v2",
                                "object": "model",
                                "created": 1700000000,
                                "owned_by": "vllm-rerank",
                                "root": "all-MiniLM-L6-v2",
                            }
                        ],
                    }
                }
            },
        }
    },
}


@router.get("/v1/models", operation_id="list_models", summary="Served models and aliases", **_MODELS)
@router.get("/models", operation_id="list_models_bare", summary="Served models and aliases (bare path)", **_MODELS)
async def list_models(request: Request, rt: RuntimeDep) -> Response:
    """Every served model and alias; `root` is the model id or path it serves."""
    external = bool(rt.settings.engine_urls)
    plans = {p.name: p for p in rt.topology.models}
    data = []
    for pipeline in rt.router.pipelines:
        plan = plans.get(pipeline.served_name)
        root = plan.spec.model if plan is not None and not external else None
        for name in dict.fromkeys((pipeline.served_name, *pipeline.policy.aliases)):
            data.append(
                {"id": name, "object": "model", "created": _STARTED, "owned_by": "vllm-rerank", "root": root or name}
            )
    return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")


# path -> the dialects it takes (the wire models of gateway.openapi), for /info
_ROUTES = {
    "/v1/rerank": ("CohereV1RerankRequest", "VoyageRerankRequest"),
    "/v2/rerank": ("CohereV2RerankRequest",),
    "/rerank": ("TeiRerankRequest", "PineconeRerankRequest", "CohereV1RerankRequest"),
    "/score": ("ScoreRequest",),
    "/v1/score": ("ScoreRequest",),
    "/v1/ranking": ("NimRankingRequest",),
    "/v1/reranking": ("MixedbreadRerankRequest",),
    "/infinity/rerank": ("InfinityRerankRequest",),
}


def info_body(rt: Runtime) -> dict[str, Any]:
    """TEI's /info, for every served model: names, family, format and window; version; limits; the
    request formats each path takes and the model formats the service can serve."""
    plans = {p.name: p for p in rt.topology.models}
    models = []
    for pipeline in rt.router.pipelines:
        engines = pipeline.engines.engines()
        plan = plans.get(pipeline.served_name)
        windows = [e.max_model_len for e in engines if e.max_model_len]
        models.append(
            {
                "model_id": pipeline.served_name,
                "aliases": list(pipeline.policy.aliases),
                "family": engines[0].family.name if engines else (plan.family.name if plan else None),
                "format": engines[0].format if engines else (plan.info.format.name if plan else None),
                "max_input_length": windows[0] if windows else None,
                "engines": len(engines),
                "engines_ready": sum(1 for e in engines if e.ready),
                "max_inflight_pairs_per_worker": pipeline.admission.limit,
            }
        )
    settings = rt.settings
    first = models[0] if models else {}
    return {
        "model_id": first.get("model_id"),
        "model_type": {"reranker": {"family": first.get("family"), "format": first.get("format")}},
        "max_input_length": first.get("max_input_length"),
        "models": models,
        "version": VERSION,
        "device": rt.topology.device,
        "max_client_batch_size": settings.max_documents,
        "max_batch_tokens": settings.max_num_batched_tokens or rt.topology.models[0].max_num_batched_tokens,
        "max_num_seqs": settings.max_num_seqs,
        "max_body_bytes": settings.max_body_bytes,
        "request_timeout_s": settings.request_timeout,
        "auto_truncate": True,
        "strict_model_names": settings.strict_model_names,
        "auth": rt.keys.enabled,
        "routes": {path: [DIALECT_BODIES[w].name for w in wires] for path, wires in _ROUTES.items()},
        "model_formats": sorted(FORMATS),
    }


@router.get(
    "/info",
    operation_id="info",
    summary="Models, version, limits and formats (as TEI's /info)",
    tags=["operations"],
    responses={200: {"description": "What the service serves and its limits"}},
)
async def info(request: Request, rt: RuntimeDep) -> Response:
    return Response(orjson.dumps(info_body(rt)), media_type="application/json")


@router.get(
    "/metrics",
    operation_id="metrics",
    summary="Prometheus metrics (the gateway's and the engines' own)",
    response_class=PlainTextResponse,
    tags=["operations"],
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4",
            "content": {"text/plain": {"schema": {"type": "string"}, "example": "vllm_rerank_requests_total{...} 1\n"}},
        }
    },
)
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    text = render_metrics(rt.registry.engines(), await rt.engine_metrics.get())
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
