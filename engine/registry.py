"""Where the engines are and which are ready, shared across processes through a state file.

The supervising process (start_service) publishes a snapshot of every engine after each state
change; gateway worker processes read it (re-read only when the file changed) and pick the
ready engine with the least outstanding work *from this worker*.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import EngineUnavailableError

__all__ = ["EngineView", "EngineRegistry", "publish_state"]


def publish_state(path: Path, engines: list[dict[str, Any]], **meta: Any) -> None:
    """Atomically replace the state file (write to a temp file, then rename)."""
    payload = {"updated": time.time(), "engines": engines, **meta}
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=str(path.parent))
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    os.replace(tmp, path)


@dataclass(frozen=True)
class EngineView:
    name: str
    url: str
    state: str
    served_model_name: str
    family: str
    score_kind: str
    raw: dict[str, Any]

    @property
    def max_model_len(self) -> int | None:
        value = self.raw.get("max_model_len")
        return int(value) if value else None

    @property
    def prompt_format(self) -> str | None:
        """The prompt the engine builds for a pair, when it is one callers can build too (EngineConfig)."""
        value = self.raw.get("prompt_format")
        return str(value) if value else None

    @property
    def ready(self) -> bool:
        return self.state == "ready"


class EngineRegistry:
    """Read-side of the engine state, for one gateway worker process."""

    def __init__(self, state_path: Path | None = None, *, static: list[dict[str, Any]] | None = None) -> None:
        self._path = state_path
        self._mtime: float = -1.0
        self._meta: dict[str, Any] = {}
        self._engines: list[EngineView] = [self._view(e) for e in (static or [])]
        self._outstanding: dict[str, int] = {}
        self._checked = 0.0
        self._lock = threading.Lock()

    @staticmethod
    def _view(e: dict[str, Any]) -> EngineView:
        return EngineView(
            name=str(e.get("name", "engine")),
            url=str(e["url"]),
            state=str(e.get("state", "ready")),
            served_model_name=str(e.get("served_model_name", "")),
            family=str(e.get("family", "bi-encoder")),
            score_kind=str(e.get("score_kind", "cosine")),
            raw=e,
        )

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
            data = json.loads(self._path.read_text())
        except (OSError, ValueError):
            return
        with self._lock:
            self._mtime = mtime
            self._meta = {k: v for k, v in data.items() if k != "engines"}
            self._engines = [self._view(e) for e in data.get("engines", [])]

    @property
    def meta(self) -> dict[str, Any]:
        self.refresh()
        return self._meta

    def engines(self) -> list[EngineView]:
        self.refresh()
        return list(self._engines)

    def pick(self, *, exclude: frozenset[str] = frozenset()) -> EngineView:
        """The ready engine with the least outstanding pairs from this worker.

        Raises:
            EngineUnavailableError: no engine is ready (starting, restarting or failed).
        """
        ready = [e for e in self.engines() if e.ready and e.url not in exclude] or [
            e for e in self.engines() if e.ready
        ]
        if not ready:
            states = ", ".join(f"{e.name}={e.state}" for e in self._engines) or "none configured"
            retry = 5.0 if any(e.state in ("starting", "restarting") for e in self._engines) else 30.0
            raise EngineUnavailableError(f"no engine is ready ({states})", retry_after=retry)
        return min(ready, key=lambda e: self._outstanding.get(e.url, 0))

    def acquire(self, url: str, n: int) -> None:
        self._outstanding[url] = self._outstanding.get(url, 0) + n

    def release(self, url: str, n: int) -> None:
        self._outstanding[url] = self._outstanding.get(url, 0) - n
