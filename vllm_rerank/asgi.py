"""The app factory uvicorn's workers import (`vllm_rerank.asgi:create_app_from_env`).

A worker is a fresh spawned interpreter: naming the factory under `vllm_rerank` makes it import
this package, and so its finder for `gateway`, before `gateway.app`, however the service was
installed. Imported only in the workers: gateway.app loads prometheus_client, which must see the
PROMETHEUS_MULTIPROC_DIR that the service sets first.
"""

from __future__ import annotations

from gateway.app import create_app_from_env

__all__ = ["create_app_from_env"]
