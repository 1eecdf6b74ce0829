"""Typed access to the per-worker runtime from route handlers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from engine import EngineClient, EngineRegistry
from gateway.service import RerankService
from gateway.settings import Settings

__all__ = ["Runtime", "RuntimeDep"]


@dataclass
class Runtime:
    settings: Settings
    registry: EngineRegistry
    client: EngineClient
    service: RerankService


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(_runtime)]
