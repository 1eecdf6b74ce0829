"""Where the engines are and which are ready, for one gateway worker process.

The supervising process (start_service) publishes a `StateFile` of every engine's
`EngineSnapshot` after each change (`engine.snapshot.publish_state`); each worker re-reads it
only when the file changed, and picks the ready engine with the least outstanding work *from
this worker*.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pydantic import ValidationError

from engine.errors import EngineUnavailableError
from engine.snapshot import EngineSnapshot, EngineState, StateFile

__all__ = ["EngineRegistry", "EngineSet", "ModelEngines"]

_COMING = (EngineState.STARTING, EngineState.RESTARTING)


class EngineRegistry:
    """Read side of the engine state. `static` engines (tests, benchmarks) replace the file.

    `max_retry_after_s` caps the Retry-After of "no engine is ready": by default a client is told to come
    back once a restart is expected to be done (the engine's last start time, minutes on a slow host);
    behind a balancer that takes this copy out of routing (Ray Serve's health check), a retry soon goes
    to another copy, so a short cap is the truthful answer there."""

    def __init__(
        self,
        state_path: Path | None = None,
        *,
        static: list[EngineSnapshot] | None = None,
        max_retry_after_s: float | None = None,
    ) -> None:
        self._path = state_path
        self._max_retry_after_s = max_retry_after_s
        self._mtime: float = -1.0
        self._engines: tuple[EngineSnapshot, ...] = tuple(static or ())
        self._outstanding: dict[str, int] = {}
        self._checked = 0.0
        self._lock = threading.Lock()

    def refresh(self, *, max_age_s: float = 0.1) -> None:
        if self._path is None:
            return
        now = time.monotonic()
        if now - self._checked < max_age_s:
            return
        self._checked = now
        try:
            mtime = self._path.stat().st_mtime
            if mtime == self._mtime:
                return
            state = StateFile.model_validate_json(self._path.read_bytes())
        except (OSError, ValidationError):
            return  # not written yet, or caught mid-replace: keep the last good snapshot
        with self._lock:
            self._mtime = mtime
            self._engines = state.engines

    def engines(self) -> tuple[EngineSnapshot, ...]:
        self.refresh()
        return self._engines

    def pick(self, *, exclude: frozenset[str] = frozenset()) -> EngineSnapshot:
        """The ready engine with the least outstanding pairs from this worker.

        Raises:
            EngineUnavailableError: no engine is ready (starting, restarting, unreachable or failed).
        """
        return self._pick(self.engines(), exclude)

    def _pick(self, engines: tuple[EngineSnapshot, ...], exclude: frozenset[str]) -> EngineSnapshot:
        ready = [e for e in engines if e.ready and e.url not in exclude] or [e for e in engines if e.ready]
        if not ready:
            states = ", ".join(f"{e.name}={e.state.value}" for e in engines) or "none configured"
            coming = [e for e in engines if e.state in _COMING]
            # Retry once a restart is expected to be done: the engine's last start time, as measured.
            retry = max((e.start_seconds or 5.0 for e in coming), default=30.0)
            if self._max_retry_after_s is not None:
                retry = min(retry, self._max_retry_after_s)
            raise EngineUnavailableError(f"no engine is ready ({states})", retry_after=retry)
        if len(ready) == 1:
            return ready[0]
        return min(ready, key=lambda e: self._outstanding.get(e.url, 0))

    def acquire(self, url: str, n: int) -> None:
        self._outstanding[url] = self._outstanding.get(url, 0) + n

    def release(self, url: str, n: int) -> None:
        self._outstanding[url] = self._outstanding.get(url, 0) - n

    def for_model(self, name: str) -> ModelEngines:
        """The engines of one served model (a service with several models)."""
        return ModelEngines(self, name)


class ModelEngines:
    """One model's engines: the registry seen through its served model name. Outstanding work is
    the registry's own (one count per engine, whichever model view called it)."""

    def __init__(self, registry: EngineRegistry, name: str) -> None:
        self.registry = registry
        self.name = name

    def engines(self) -> tuple[EngineSnapshot, ...]:
        return tuple(e for e in self.registry.engines() if e.served_model_name == self.name)

    def pick(self, *, exclude: frozenset[str] = frozenset()) -> EngineSnapshot:
        """Raises: EngineUnavailableError when none of this model's engines is ready."""
        return self.registry._pick(self.engines(), exclude)

    def acquire(self, url: str, n: int) -> None:
        self.registry.acquire(url, n)

    def release(self, url: str, n: int) -> None:
        self.registry.release(url, n)


EngineSet = EngineRegistry | ModelEngines
"""What an EngineClient scores on: every engine of the service, or one model's."""
