"""Typed access to the per-worker runtime from route handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from core import ModelRouter, RerankPipeline
from engine import EngineClient, EngineRegistry
from gateway.keys import KeyStore
from gateway.metrics import EngineMetricsCache
from gateway.settings import Settings
from gateway.topology import Topology

__all__ = ["Runtime", "RuntimeDep"]


@dataclass
class Runtime:
    settings: Settings
    topology: Topology
    registry: EngineRegistry
    client: EngineClient  # every engine of the service (metrics)
    router: ModelRouter  # a request's model name -> that model's pipeline
    engine_metrics: EngineMetricsCache  # the engines' /metrics, fetched at most every few seconds
    keys: KeyStore  # the accepted API keys (the middleware's own store)

    @property
    def pipeline(self) -> RerankPipeline:
        """The first model's pipeline (the one that serves requests naming no configured model)."""
        return self.router.default


async def _runtime(request: Request) -> Runtime:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop on every request
    # (bench/gateway_cost.py measured 1-3 ms of CPU per request, most of the gateway's fixed cost).
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
