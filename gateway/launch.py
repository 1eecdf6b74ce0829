"""The engines one service process owns, from its settings: where they listen, their configs and handles.

Shared by the standalone service (start_service.py: one supervisor for every uvicorn worker) and the
Ray Serve replica (deploy/ray: each replica owns its engines), so both start the same engines from
the same flags. Nothing here serves HTTP or installs signal handlers.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from engine import FAMILIES, EngineConfig, EngineHandle, EngineSupervisor, RestartPolicy, publish_state
from engine import mps as mps_
from engine.external import ExternalEngine
from engine.mps import MpsDaemon, MpsError
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
    mps: MpsDaemon | None = None  # the engines' private MPS daemon, running (--mps)

    def publish(self) -> None:
        """Write every handle's snapshot to the state file the gateway workers read."""
        publish_state(self.state_path, [h.snapshot() for h in self.handles])

    def cleanup(self) -> None:
        """Stop the MPS daemon and remove the socket and runtime directories made for these engines
        (after they stopped)."""
        if self.mps is not None:
            self.mps.stop()
            shutil.rmtree(self.mps.directory, ignore_errors=True)
            self.mps = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
        if self.own_runtime_dir:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)


def plan_engines(settings: Settings, topology: Topology, *, ports: list[int]) -> ServiceEngines:
    """Configs and handles (not started) for the service's engines, in a runtime dir (--runtime-dir, else a
    temp dir). Managed engines listen on Unix sockets in a directory only this user can open (no TCP port
    a local process could reach around the key, limits and admission), or on `ports` (--engine-port).

    Where the topology asks for MPS (--mps), the private MPS daemon is started here, before any engine
    (cleanup() stops it): with --mps auto, a daemon that does not start leaves the engines without MPS
    (a warning); with --mps on it raises MpsError."""
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
    try:
        mps = _start_mps(settings, topology, runtime_dir)
    except MpsError:  # --mps on: the start stops here, leaving nothing behind
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
        if not settings.runtime_dir:
            shutil.rmtree(runtime_dir, ignore_errors=True)
        raise
    configs = engine_configs(settings, topology, ports, sockets=sockets, mps_env=mps.env() if mps else None)
    engines = ServiceEngines(
        configs=configs,
        handles=[],
        state_path=runtime_dir / "engine-state.json",
        socket_dir=socket_dir,
        runtime_dir=runtime_dir,
        own_runtime_dir=not settings.runtime_dir,
        mps=mps,
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


def _start_mps(settings: Settings, topology: Topology, runtime_dir: Path) -> MpsDaemon | None:
    """The engines' MPS daemon, started, or None (not asked for, or --mps auto and it did not start)."""
    if topology.mps_control is None:
        return None
    log = logging.getLogger("vllm_rerank")
    refusal = mps_.mps_refusal()
    if refusal and settings.mps == "auto":
        log.info("mps_skipped reason=%r", refusal)
        return None
    directory = runtime_dir / "mps"
    if len(str(directory)) > 80:  # its control socket is a Unix socket (at most 107 bytes of path)
        directory = Path(tempfile.mkdtemp(prefix="vllm-rerank-mps-"))
    daemon = MpsDaemon(directory, binary=topology.mps_control)
    try:
        daemon.start()
    except MpsError as exc:
        if settings.mps == "on":
            raise
        log.warning("mps_unavailable reason=%s engines=without_mps", exc)
        return None
    return daemon
