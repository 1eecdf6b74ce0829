"""The rerank service on Ray Serve: each Serve replica owns its engine(s) and serves every dialect.

    serve run deploy/ray/config.yaml          # from the repository root (README: Scaling out)

`app_builder` reads the application's `args` (`flags`: the standalone service's command line, e.g.
`["--model", "BAAI/bge-reranker-base", "--max-num-seqs", "64"]`; env vars such as MODEL work as they do for
start_service.py) and refuses a bad flag or model at deploy time with the service's own message. Each
replica (`RerankReplica`) then does what start_service.py does for its engines, through the same code:

* settings from the same flags (gateway.cli), the engines and their configs (gateway.topology,
  gateway.launch), the same pre-flight checks (gateway.startup), supervisors that restart a crashed
  engine (engine.supervisor); one engine per replica unless `--engine-replicas` says more, so Ray scales
  engines by scaling replicas, each placed by its `ray_actor_options` (num_cpus, num_gpus: Ray sets
  CUDA_VISIBLE_DEVICES, which the engine inherits);
* the service's FastAPI app (gateway.app.create_app) as the replica's ASGI ingress: every dialect
  (/v1/rerank, /v2/rerank, /rerank, vendors', /health, /v1/models, /metrics) with its own errors,
  Retry-After, admission and keys;
* `check_health` raises while an engine is not READY, so Serve stops routing to the replica and replaces
  it (until then its requests get 503 with a Retry-After of at most RETRY_AFTER_CAP_S), and the
  constructor returns only once the engines answered their warm-up, so a replica takes traffic only
  when it can score;
* on shutdown (scale-down, redeploy, `serve shutdown`) Serve drains the replica's requests
  (graceful_shutdown_timeout_s), then the engines get SIGTERM and --stop-grace before SIGKILL. An engine
  also dies with its replica's process (PR_SET_PDEATHSIG), so a killed replica leaves no engine behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from ray import serve
from ray.serve import Application

from engine import EngineRegistry, EngineStartError, EngineState
from engine.tokenizer import load_tokenizer
from gateway.app import create_app
from gateway.cli import parse_settings
from gateway.launch import ServiceEngines, plan_engines
from gateway.settings import Settings
from gateway.startup import check_engines
from gateway.topology import plan_topology

__all__ = ["RerankReplica", "app_builder", "replica_settings"]

log = logging.getLogger("vllm_rerank.ray")

# Retry-After of a replica with no ready engine. Standalone, the service says "when the restart should be
# done" (the engine's last start time: minutes on a slow host). Here Serve takes the replica out of
# routing after 3 failed health checks (health_check_period_s 2 s: ~6 s) and a retry goes to another
# replica, so the client is told to come back in a few seconds, not minutes.
RETRY_AFTER_CAP_S = 5.0


def replica_settings(flags: Sequence[str], environ: Mapping[str, str]) -> Settings:
    """The settings of one replica: the standalone service's flags and env, with one engine per replica
    unless --engine-replicas/--engine-devices (or a model's `replicas`) ask for more, and one worker
    (Serve's proxy is the HTTP server; the replica runs the app in its own event loop).

    Raises: SettingsError (the message names the flag and env var), as start_service.py would."""
    settings = parse_settings(list(flags), environ)
    if not settings.engine_replicas and not settings.engine_devices:
        settings = settings.replace(engine_replicas=1)
    return settings.replace(workers=1)


@serve.deployment(
    name="rerank",
    # Overridden by the config file's `deployments:` entry (deploy/ray/config.yaml).
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=32,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=20,
)
@serve.ingress()
class RerankReplica:
    """One Serve replica: its engines, supervised, and the service's app over them."""

    async def __init__(self, flags: Sequence[str] = ()) -> None:  # type: ignore[misc]  # Serve awaits it
        self.settings = replica_settings(flags, os.environ)
        topology = plan_topology(self.settings)
        self.engines: ServiceEngines = plan_engines(self.settings, topology, ports=[])
        try:
            check_engines(self.settings, self.engines.configs, environ=os.environ)
        except EngineStartError as exc:
            self.engines.cleanup()
            raise RuntimeError(f"cannot start ({exc.cause}): {exc.message}") from None
        self.engines.publish()
        for handle in self.engines.handles:
            handle.start()
        # The tokenizers load while the engines do, as in the standalone service: after the constructor the
        # replica takes traffic, and a load then (transformers' import, seconds of CPU holding the GIL) stalls
        # its event loop, its health checks too (seen: 30 s on a busy core, the replica replaced).
        tokenizers = asyncio.gather(
            *(
                asyncio.to_thread(load_tokenizer, c.model, c.family)
                for c in {c.model: c for c in self.engines.configs}.values()
            )
        )
        for handle in self.engines.handles:  # a failed first start fails the replica, with the engine's reason
            if not await asyncio.to_thread(handle.wait_first_start):
                err = handle.start_error
                await asyncio.to_thread(self._stop)
                raise RuntimeError(
                    f"engine {handle.name} failed to start ({err.cause if err else 'unknown'}): "
                    f"{err.message if err else 'engine did not start'}"
                )
        await tokenizers
        log.info("replica_ready engines=%s", ",".join(c.url for c in self.engines.configs))

    def __serve_build_asgi_app__(self) -> FastAPI:
        registry = EngineRegistry(self.engines.state_path, max_retry_after_s=RETRY_AFTER_CAP_S)
        return create_app(self.settings, registry=registry)

    def check_health(self) -> None:
        """Serve's health check: healthy only while every engine is READY (a crashed or restarting engine
        takes the replica out of routing; Serve replaces it)."""
        for handle in self.engines.handles:
            snap = handle.snapshot()
            if snap.state != EngineState.READY:
                raise RuntimeError(f"engine {handle.name} is {snap.state.value}")

    def _stop(self) -> None:
        for handle in self.engines.handles:
            handle.stop()
        self.engines.publish()
        self.engines.cleanup()

    async def __del__(self) -> None:
        if hasattr(self, "engines"):
            await asyncio.to_thread(self._stop)


def app_builder(args: dict[str, Any]) -> Application:
    """`import_path: vllm_rerank.ray_serve:app_builder`. args: `flags` (list of strings), the standalone
    service's command line. A bad flag or model fails the deploy here, before any replica starts."""
    flags = [str(f) for f in args.get("flags") or ()]
    settings = replica_settings(flags, os.environ)
    plan_topology(settings)  # a refused model or GPU share fails here, with the service's message
    gpus = settings.tensor_parallel_size if settings.resolved_device == "cuda" else 0
    options: dict[str, Any] = {"num_cpus": 1}
    if gpus:
        options["num_gpus"] = gpus
    deployment: Any = RerankReplica  # a serve.Deployment once decorated (Ray's decorator is untyped)
    app: Application = deployment.options(ray_actor_options=options).bind(flags)
    return app
