"""The FastAPI application: `create_app(settings)`; the lifespan owns the engine client.

Engine *processes* are owned by start_service.py (one supervisor for all workers); each
worker process only reads the engine state file and calls the engines over loopback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio.to_thread
from fastapi import FastAPI, Request
from starlette.responses import Response

from engine import EngineClient, EngineRegistry
from gateway.deps import Runtime
from gateway.errors import register_error_handlers
from gateway.routes import ops, rerank
from gateway.service import RerankService
from gateway.settings import SETTINGS_ENV, Settings

__all__ = ["create_app", "create_app_from_env", "STATE_FILE_ENV"]

STATE_FILE_ENV = "VLLM_RERANK_STATE_FILE"
log = logging.getLogger("vllm_rerank.gateway")


def create_app(settings: Settings, *, registry: EngineRegistry) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.max_workers
        client = EngineClient(registry)
        service = RerankService(client=client, registry=registry, settings=settings)
        app.state.runtime = Runtime(settings=settings, registry=registry, client=client, service=service)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(title="vllm-rerank", version="0.1.0", lifespan=lifespan)

    @app.middleware("http")
    async def request_id(request: Request, call_next):  # type: ignore[no-untyped-def]
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        request.state.request_id = rid
        response: Response = await call_next(request)
        response.headers["x-request-id"] = rid
        return response

    register_error_handlers(app)
    app.include_router(rerank.router)
    app.include_router(ops.router)
    return app


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings and the state file path come from the parent."""
    settings = Settings.from_json(os.environ[SETTINGS_ENV])
    registry = EngineRegistry(Path(os.environ[STATE_FILE_ENV]))
    return create_app(settings, registry=registry)
