"""Start-up that tells the truth: the checks before any engine starts, and one "ready at" line.

`preflight_exit_code()` runs engine.preflight for the managed engines and turns a problem into one
`error: cannot start (<cause>): ...` line and an exit code (2 for what the command line or config
got wrong, 1 for what the machine or network did). `announce_ready()` waits until every engine has
finished its first start (its warm-up included, engine.supervisor) and logs, once,
`ready at http://HOST:PORT (model M, N engines)`. Until then nothing claims the service runs:
uvicorn's "Uvicorn running on ..." is re-worded by `ListeningFilter` (gateway.server installs it).
The `vllm_rerank.startup` logger stays at INFO whatever --log-level says: a quiet service still
says when it is ready.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from engine import EngineConfig, EngineHandle, EngineStartError, EngineState
from engine.preflight import preflight
from gateway.settings import Settings

__all__ = ["STARTUP_LOG", "ListeningFilter", "announce_ready", "check_engines", "preflight_exit_code", "ready_line"]

STARTUP_LOG = logging.getLogger("vllm_rerank.startup")
STARTUP_LOG.setLevel(logging.INFO)
# Causes that mean the command line or config file is wrong (exit 2, as argparse); others exit 1.
_USAGE_CAUSES = {"bad_flag", "bad_model", "not_cached", "too_large"}


def check_engines(settings: Settings, configs: Sequence[EngineConfig], *, environ: Mapping[str, str]) -> None:
    """engine.preflight for each distinct model (and flag set) of `configs`; replicas share what is checked.

    Raises: EngineStartError with the cause of the first problem."""
    if not settings.preflight or not configs:
        return
    started = time.monotonic()
    distinct = {(c.model, c.extra_args, c.device, c.dtype, c.extra_env): c for c in configs}
    for config in distinct.values():
        preflight(config, environ=environ, check_flags=not settings.engine_command)
    models = ",".join(sorted({c.model for c in configs}))
    STARTUP_LOG.info("preflight_passed model=%s seconds=%.1f", models, time.monotonic() - started)


def preflight_exit_code(settings: Settings, configs: Sequence[EngineConfig], *, environ: Mapping[str, str]) -> int:
    """0 when the managed engines may start; else the exit code, after printing one line that names the cause."""
    try:
        check_engines(settings, configs, environ=environ)
    except EngineStartError as exc:
        print(f"error: cannot start ({exc.cause}): {exc.message}", file=sys.stderr, flush=True)
        return 2 if exc.cause in _USAGE_CAUSES else 1
    return 0


def _shown_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ready_line(settings: Settings, *, model: str, engines: int) -> str:
    url = f"http://{_shown_host(settings.host or '0.0.0.0')}:{settings.port}"
    return f"ready at {url} (model {model}, {engines} engine{'s' if engines != 1 else ''})"


def announce_ready(
    handles: Sequence[EngineHandle], settings: Settings, *, model: str, stopping: threading.Event, started: float
) -> None:
    """Block until every engine's first start is over; log the ready line when all are READY."""
    for handle in handles:
        if not handle.wait_first_start() or stopping.is_set():
            return
    # External engines end their "first start" at once; they are ready when they answer.
    while not all(h.snapshot().state == EngineState.READY for h in handles):
        if stopping.wait(0.5):
            return
    line = ready_line(settings, model=model, engines=len(handles))
    STARTUP_LOG.info("%s after %.1fs", line, time.monotonic() - started)


class ListeningFilter(logging.Filter):
    """uvicorn's "Uvicorn running on X" comes as soon as the socket is bound, a minute before the engines
    are ready: say "listening on X (not ready yet ...)" instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith("Uvicorn running on"):
            record.msg = record.msg.replace("Uvicorn running on", "gateway listening on").replace(
                "(Press CTRL+C to quit)", "(not ready yet: /health answers 503 until the 'ready at' line)"
            )
            record.__dict__.pop("color_message", None)
        return True
