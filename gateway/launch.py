"""The engines one service process owns, from its settings: where they listen, their configs and handles.

Shared by the standalone service (start_service.py: one supervisor for every uvicorn worker) and the
Ray Serve replica (deploy/ray: each replica owns its engines), so both start the same engines from
the same flags. Nothing here serves HTTP or installs signal handlers.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine import FAMILIES, EngineConfig, EngineHandle, EngineSupervisor, RestartPolicy, publish_state
from engine.external import ExternalEngine
from gateway.settings import Settings
from gateway.topology import Topology, engine_configs

__all__ = ["ServiceEngines", "plan_engines"]


@dataclass
class ServiceEngines:
    """The managed engines' configs and every engine's handle (managed, then external); their state file."""

    configs: list[EngineConfig]
    handles: list[EngineHandle]
    state_path: Path
    socket_dir: Path | None
    runtime_dir: Path
    own_runtime_dir: bool  # made here (a temp dir): removed by cleanup()

    def publish(self) -> None:
        """Write every handle's snapshot to the state file the gateway workers read."""
        publish_state(self.state_path, [h.snapshot() for h in self.handles])

    def cleanup(self) -> None:
        """Remove the socket and runtime directories made for these engines (after they stopped)."""
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def plan_engines(settings: Settings, topology: Topology, *, ports: list[int]) -> ServiceEngines:
    """Configs and handles (not started) for the service's engines, in a runtime dir (--runtime-dir, else a
    temp dir). Managed engines listen on Unix sockets in a directory only this user can open (no TCP port
    a local process could reach around the key, limits and admission), or on `ports` (--engine-port)."""
    runtime_dir = Path(settings.runtime_dir or tempfile.mkdtemp(prefix="vllm-rerank-"))
    runtime_dir.mkdir(parents=True, exist_ok=True)
    sockets: list[str] = []
    socket_dir: Path | None = None
    if not ports and topology.engines:
        socket_dir = runtime_dir / "engines"
        if len(str(socket_dir)) > 80:  # a Unix socket path holds at most 107 bytes
            socket_dir = Path(tempfile.mkdtemp(prefix="vllm-rerank-sock-"))
        socket_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        socket_dir.chmod(0o700)
        sockets = [str(socket_dir / f"engine{i}.sock") for i in range(len(topology.engines))]
    configs = engine_configs(settings, topology, ports, sockets=sockets)
    engines = ServiceEngines(
        configs=configs,
        handles=[],
        state_path=runtime_dir / "engine-state.json",
        socket_dir=socket_dir,
        runtime_dir=runtime_dir,
        own_runtime_dir=not settings.runtime_dir,
    )
    engines.handles.extend(
        EngineSupervisor(
            c,
            ready_timeout_s=settings.ready_timeout,
            stop_grace_s=settings.stop_grace,
            hang_timeout_s=settings.hang_timeout,
            on_change=engines.publish,
            policy=RestartPolicy(
                cap_s=settings.restart_backoff_cap,
                max_crashes=settings.max_engine_crashes,
                window_s=settings.crash_window,
            ),
        )
        for c in configs
    )
    family = FAMILIES[settings.model_family] if settings.model_family else None
    engines.handles.extend(
        ExternalEngine(
            url,
            name=f"external{i}",
            family=family,
            served_model_name=settings.served_model_name,
            on_change=engines.publish,
        )
        for i, url in enumerate(settings.engine_urls)
    )
    return engines
