"""The HTTP server: uvicorn, run with `GatewayHttpProtocol` (gateway.protocol: the connection limits
its stock protocol lacks and a drain that drops nothing) in one process or `--workers` processes.

`GatewayServer` takes the connections already queued on the listening socket just before it
closes it at shutdown, so that none is reset by the kernel unaccepted.

With `--workers` > 1 the main process holds a copy of the listening socket for uvicorn's worker
restarts. uvicorn never closes it before its workers exit, so after SIGTERM the kernel kept
completing connections on it that no process would ever accept, and reset them when the main
process exited: requests lost on a port that still looked open. `_Supervisor` closes the main
process's copy before it signals the workers, so the port is refused as soon as the workers have
closed theirs.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import os
import socket
from typing import Any, cast

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.server import Server
from uvicorn.supervisors import Multiprocess
from uvicorn.supervisors import multiprocess as uvicorn_multiprocess
from uvicorn.supervisors.multiprocess import Process

from gateway.logformat import LogFormat, use_format
from gateway.protocol import ConnectionLimits, GatewayHttpProtocol, default_max_connections
from gateway.settings import Settings
from gateway.startup import ListeningFilter

__all__ = ["GatewayConfig", "GatewayServer", "limits_from", "serve"]

log = logging.getLogger("vllm_rerank.server")


def limits_from(settings: Settings) -> ConnectionLimits:
    return ConnectionLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        max_connections=settings.max_connections or default_max_connections(),
        drain_timeout=settings.stop_grace,
        drain_idle_grace=min(1.0, settings.stop_grace),
    )


class GatewayConfig(uvicorn.Config):
    """uvicorn's Config plus our `ConnectionLimits` (pickled with it into every worker)."""

    def __init__(self, app: Any, *, limits: ConnectionLimits, log_format: LogFormat = "text", **kwargs: Any) -> None:
        self.limits = limits
        self.log_format = log_format
        super().__init__(app, **kwargs)

    def configure_logging(self) -> None:
        """uvicorn's logging, with "Uvicorn running on" re-worded (gateway.startup): the engines may
        still be loading. Runs in the main process and again in every worker."""
        super().configure_logging()
        use_format(getattr(self, "log_format", "text"))
        logger = logging.getLogger("uvicorn.error")
        if not any(isinstance(f, ListeningFilter) for f in logger.filters):
            logger.addFilter(ListeningFilter())


class GatewayServer(Server):
    """uvicorn's Server, taking the connections already queued on the listening socket just before it
    closes it: the kernel resets those that no process accepted when the last listener closes, and a
    busy event loop can leave a whole iteration's worth queued (module docstring)."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        config, state = self.config, self.server_state

        def protocol() -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=state, app_state=self.lifespan.state, _loop=loop
            )

        for _ in range(_MAX_DRAIN_ROUNDS):
            pending = self._accept_pending()
            if not pending:
                break
            log.info("drain_accepted connections=%d", len(pending))
            await asyncio.gather(*(loop.connect_accepted_socket(protocol, c) for c in pending), return_exceptions=True)
        # No await between the last empty accept and uvicorn closing the listeners (its first statements).
        await super().shutdown(sockets)

    def _accept_pending(self) -> list[socket.socket]:
        accepted: list[socket.socket] = []
        for server in getattr(self, "servers", []):
            for listener in server.sockets or ():
                try:
                    dup = socket.socket(fileno=os.dup(listener.fileno()))
                except OSError:
                    continue
                try:
                    dup.setblocking(False)
                    while len(accepted) < _MAX_DRAIN_ACCEPTS:
                        conn, _ = dup.accept()
                        conn.setblocking(False)
                        accepted.append(conn)
                except OSError:  # BlockingIOError: nothing (more) queued
                    pass
                finally:
                    dup.close()
        return accepted


_SUPERVISOR_TAKES_TARGET = "target" in inspect.signature(Multiprocess.__init__).parameters
_MAX_DRAIN_ROUNDS = 10
_MAX_DRAIN_ACCEPTS = 1024


class _WorkerProcess(Process):
    """A uvicorn worker process that runs `GatewayServer`."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = GatewayServer(config=self.config)
        return self._server


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, with `GatewayServer` in every worker, and closing this (main)
    process's copy of the listening socket before it signals the workers: once they have closed
    theirs the port is refused, rather than completing connections nobody accepts (module docstring)."""

    def run(self) -> None:
        if _SUPERVISOR_TAKES_TARGET:
            super().run()
            return
        # uvicorn >= 0.51 builds each worker's Server itself, in the workers it creates from this
        # module-level name (at start, on a crash, on SIGHUP/SIGTTIN): ours run GatewayServer.
        original = uvicorn_multiprocess.Process
        uvicorn_multiprocess.Process = _WorkerProcess  # type: ignore[misc]
        try:
            super().run()
        finally:
            uvicorn_multiprocess.Process = original  # type: ignore[misc]

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def serve(settings: Settings, app: str) -> None:
    """Run the gateway (`app`: an import string of an app factory) with `--workers` processes, the
    connection limits of `settings` and a drain of `--stop-grace` s; returns once it has stopped.

    Raises: SystemExit(STARTUP_FAILURE) when it could not start (uvicorn's convention)."""
    limits = limits_from(settings)
    config = GatewayConfig(
        app,
        limits=limits,
        log_format=settings.log_format,
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,
        http=GatewayHttpProtocol,
        # A backstop: our protocol answers what is left at stop_grace; uvicorn cancels 1 s later.
        timeout_graceful_shutdown=math.ceil(settings.stop_grace) + 1,
    )
    log.info(
        "http_limits header_timeout=%g body_timeout=%g max_connections=%d drain=%g",
        limits.header_timeout,
        limits.body_timeout,
        limits.max_connections,
        limits.drain_timeout,
    )
    if config.workers > 1:
        sock = config.bind_socket()
        if _SUPERVISOR_TAKES_TARGET:  # uvicorn < 0.51: the supervisor runs the Server it is given
            cast(Any, _Supervisor)(config, target=GatewayServer(config=config).run, sockets=[sock]).run()
        else:
            _Supervisor(config, sockets=[sock]).run()
        return
    config.load_app()
    server = GatewayServer(config=config)
    server.run()
    if not server.started:
        raise SystemExit(STARTUP_FAILURE)
