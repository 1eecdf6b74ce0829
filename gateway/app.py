"""The FastAPI application: `create_app(settings)`; the lifespan owns the engine client.

Engine *processes* are owned by start_service.py (one supervisor for all workers); each
worker process only reads the engine state file and calls the engines over loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from core import Admission, ModelRouter, PipelinePolicy, RerankPipeline, ScoreCache
from engine import EngineClient, EngineRegistry, ModelFamily
from engine.process import die_with_parent
from engine.registry import EngineSet
from engine.tokenizer import ModelTokenizer, load_tokenizer, loaded_tokenizer
from engine.transport import HttpTransport, Transport
from gateway import openapi
from gateway.deps import Runtime
from gateway.docs import mount_docs
from gateway.errors import register_error_handlers
from gateway.keys import KeyStore
from gateway.logformat import configure_logging
from gateway.metrics import METRICS, TIMING_HEADERS, EngineMetricsCache
from gateway.middleware import GatewayMiddleware
from gateway.routes import ops, rerank, vendors
from gateway.settings import SETTINGS_ENV, Settings
from gateway.topology import ModelPlan, Topology, plan_topology
from gateway.tracing import Tracing
from gateway.version import VERSION

__all__ = ["PARENT_PID_ENV", "STATE_FILE_ENV", "create_app", "create_app_from_env"]

STATE_FILE_ENV = "RERANK_STATE_FILE"  # not VLLM_* (vLLM warns about unknown ones)
PARENT_PID_ENV = "RERANK_GATEWAY_PID"
log = logging.getLogger("vllm_rerank.gateway")


class _Tokenizers:
    """core.ports.TokenizerSource over engine.tokenizer's per-process cache."""

    def loaded(self, model: str, family: ModelFamily) -> ModelTokenizer | None:
        return loaded_tokenizer(model, family)

    def load(self, model: str, family: ModelFamily) -> ModelTokenizer | None:
        return load_tokenizer(model, family)


def build_pipeline(settings: Settings, plan: ModelPlan, engines: EngineSet, door: EngineClient) -> RerankPipeline:
    """One model's pipeline: its own names, admission limit, score cache and default instruction."""
    policy = PipelinePolicy(
        served_name=plan.name,
        aliases=plan.spec.aliases,
        strict_model_names=settings.strict_model_names,
        max_documents=settings.max_documents,
        request_timeout=settings.request_timeout,
        pretokenize=settings.pretokenize == "auto",
        instruction=plan.spec.instruction,
    )
    return RerankPipeline(
        door=door,
        engines=engines,
        tokenizers=_Tokenizers(),
        policy=policy,
        admission=Admission(plan.inflight_pairs_per_worker, on_change=METRICS.inflight_pairs.inc),
        cache=ScoreCache(settings.score_cache_size),
    )


def build_router(
    settings: Settings, topology: Topology, registry: EngineRegistry, client: EngineClient, transport: Transport
) -> ModelRouter:
    """A pipeline per served model; with several, each scores on its own engines only."""
    if len(topology.models) == 1:
        pipelines = [build_pipeline(settings, topology.models[0], registry, client)]
    else:
        pipelines = []
        for plan in topology.models:
            engines = registry.for_model(plan.name)
            pipelines.append(build_pipeline(settings, plan, engines, EngineClient(engines, transport=transport)))
    return ModelRouter(pipelines, strict=settings.strict_model_names)


def create_app(
    settings: Settings,
    *,
    registry: EngineRegistry,
    engine_transport: Transport | None = None,
    freeze_heap: bool = False,
) -> FastAPI:
    """The app for one worker. `engine_transport` replaces the HTTP transport to the engines
    (tests inject faults and fuzz with it). `freeze_heap`: a worker process's own app moves what its
    start-up made out of the garbage collector's sight (`_freeze_heap`); tests that build many apps in
    one process leave it off."""
    topology = plan_topology(settings)
    keys = KeyStore(settings.api_keys, settings.api_key_file)
    tracing = (
        Tracing(settings.otlp_endpoint, service_name=settings.otel_service_name, service_version=VERSION)
        if settings.otlp_endpoint
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.max_workers
        transport = engine_transport or HttpTransport(max_connections=512)
        client = EngineClient(registry, transport=transport)  # closes the transport, shared by every model
        router = build_router(settings, topology, registry, client, transport)
        app.state.runtime = Runtime(
            settings=settings,
            topology=topology,
            registry=registry,
            client=client,
            router=router,
            engine_metrics=EngineMetricsCache(client.engine_metrics),
            keys=keys,
        )
        if freeze_heap:
            _freeze_heap()  # the imports and the app
        warm = [asyncio.ensure_future(_preload_tokenizer(p)) for p in router.pipelines]
        if freeze_heap:
            warm.append(asyncio.ensure_future(_freeze_after(list(warm))))  # and the tokenizers
        try:
            yield
        finally:
            for task in warm:
                task.cancel()
            await client.aclose()
            if tracing is not None:
                await anyio.to_thread.run_sync(tracing.shutdown)  # sends what is batched

    app = FastAPI(
        title="vllm-rerank",
        version=VERSION,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # gateway.docs: the same pages, with assets served from here
        redoc_url=None,
        openapi_tags=[
            {"name": "rerank", "description": "Rerank and score, in each client's own dialect"},
            {"name": "operations", "description": "Health, models, info and metrics"},
        ],
    )
    app.add_middleware(
        GatewayMiddleware,
        keys=keys,
        protect_ops=settings.protect_ops,
        max_body_bytes=settings.max_body_bytes,
        tracing=tracing,
        # the rerank and score paths are answered by the middleware itself (the routes share the answers)
        answers={**rerank.ANSWERS, **vendors.ANSWERS},
        runtime=lambda: app.state.runtime,
    )
    if settings.cors_allow_origins:
        # Outside the gateway middleware: a preflight (no key, no body) is answered here, and every answer,
        # errors included, carries the CORS headers.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=list(settings.cors_allow_methods),
            allow_headers=list(settings.cors_allow_headers),
            allow_credentials=settings.cors_allow_credentials,
            expose_headers=["x-request-id", "retry-after", *TIMING_HEADERS],
        )
    register_error_handlers(app)
    app.include_router(rerank.router)
    app.include_router(vendors.router)
    app.include_router(ops.router)
    openapi.install(app)
    mount_docs(app)
    return app


_DESCRIPTION = """A drop-in rerank API in front of supervised vLLM engines. Each path takes the request
bodies of the clients that call it (Cohere, Jina, Voyage, TEI, Pinecone, vLLM, NVIDIA NIM, Mixedbread,
Infinity) and answers in the same dialect, errors included. With keys configured, send
`Authorization: Bearer KEY` (Pinecone clients: `Api-Key`)."""


async def _preload_tokenizer(pipeline: RerankPipeline) -> None:
    """Load a model's tokenizer as soon as its engines' state names the model (while they still load), so
    it is there before the service says ready and no request pays for it (bench/first_request.py: the
    first request after ready took 5.2 s instead of 0.8 s when this waited for a ready engine)."""
    while True:
        known = [e for e in pipeline.engines.engines() if e.model]
        if known:
            await pipeline.tokenizer(known[0])
            return
        await asyncio.sleep(1.0)


def _freeze_heap() -> None:
    """Collect, then move every object alive now to the collector's permanent generation (gc.freeze).

    A worker holds ~460k objects after start-up (FastAPI, pydantic, transformers, a tokenizer), and
    every full (gen-2) collection walks all of them: `gc.collect(2)` took 210 ms on the 2-vCPU VM,
    and in isolation the first 300 request-sized rounds of allocations after loading them met one
    such pause of 300-497 ms (none with the heap frozen). Whichever request is in flight when the
    collector runs waits for it. Frozen, the start-up objects are never walked again; what requests
    make is collected as before. (bench/first_request.py on that VM saw no outlier in the first 81
    requests with or without this: there the first full collection came before ready. The later
    ones, as caches and pools grow, are what this keeps short.)"""
    gc.collect()
    gc.freeze()


async def _freeze_after(tasks: list[asyncio.Future[None]]) -> None:
    """Freeze again once the tokenizers are loaded (they bring transformers' objects)."""
    await asyncio.gather(*tasks, return_exceptions=True)
    _freeze_heap()


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings and the state file path come from the parent.

    A worker process (--workers > 1) dies with its parent: a SIGKILLed service leaves none serving."""
    parent = int(os.environ.get(PARENT_PID_ENV) or 0)
    if parent and os.getpid() != parent:
        die_with_parent(parent)
    settings = Settings.model_validate_json(os.environ[SETTINGS_ENV])
    configure_logging(settings.log_level, settings.log_format)  # the handler: no-op if configured
    registry = EngineRegistry(Path(os.environ[STATE_FILE_ENV]))
    return create_app(settings, registry=registry, freeze_heap=True)
