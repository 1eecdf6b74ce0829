"""Engines the service does not manage (`--engine-url`): health-checked, never started or stopped.

Each `ExternalEngine` polls its server's /health and publishes the same snapshot shape as
`EngineSupervisor`, so gateway workers balance over managed and external engines alike. An
unreachable engine is skipped (state "unreachable") and picked again once /health answers 200.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from engine.errors import EngineStartError
from engine.families import FAMILIES, ModelFamily
from engine.formats import FORMATS, FormatRefusal, ModelFormat, detect_format
from engine.snapshot import EngineArgs, EngineSnapshot, EngineState
from engine.transport import sync_client

__all__ = ["ExternalEngine"]

log = logging.getLogger("vllm_rerank.engine")


class ExternalEngine:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        family: ModelFamily | None = None,
        served_model_name: str | None = None,
        interval_s: float = 1.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._base = self.url
        self.name = name
        self._family_override = family
        self.format: ModelFormat = _generic(family or FAMILIES["bi-encoder"])
        self.logit_offset = 0.0
        self.served_model_name = served_model_name or ""
        self.model = ""
        self.max_model_len: int | None = None
        self.interval_s = interval_s
        self.state = EngineState.STARTING
        self.last_error: str | None = None
        self.restarts = 0
        self.ready_since: float | None = None
        self.start_error: EngineStartError | None = None  # external engines never fail the start
        self._on_change = on_change or (lambda: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        self.state = EngineState.STOPPED

    def wait_first_start(self, timeout: float | None = None) -> bool:
        """External engines never fail the service's start; they are retried forever."""
        return True

    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot(
            name=self.name,
            url=self.url,
            managed=False,
            state=self.state,
            model=self.model,
            served_model_name=self.served_model_name,
            family=self.format.family,
            format=self.format.name,
            # Its template is unknown, so prompts go as text, except for a format whose official prompt
            # only token ids reproduce (those ids do not depend on the engine's template).
            prompt_format=self.format.prompt if self.format.ids_only else None,
            logit_offset=self.logit_offset,
            args=EngineArgs(max_model_len=self.max_model_len),
            restarts=self.restarts,
            last_error=self.last_error,
            ready_since=self.ready_since,
        )

    def _describe(self, client: httpx.Client) -> None:
        """Learn the served name and model (for family detection) from /v1/models."""
        data = client.get(f"{self._base}/v1/models").json()
        first = (data.get("data") or [{}])[0]
        self.served_model_name = self.served_model_name or str(first.get("id", ""))
        self.model = str(first.get("root") or first.get("id") or "")
        if first.get("max_model_len"):
            self.max_model_len = int(first["max_model_len"])
        if self._family_override is None:
            try:
                info = detect_format(self.model)
                self.format, self.logit_offset = info.format, info.logit_offset
            except FormatRefusal as exc:
                log.warning("engine_format name=%s %s; scoring it as a %s", self.name, exc, self.format.name)

    def _set(self, state: EngineState, error: str | None = None) -> None:
        if state != self.state:
            suffix = f" error={error}" if error else ""
            log.info("engine_state name=%s url=%s state=%s%s", self.name, self.url, state.value, suffix)
            if state is EngineState.READY and self.state is EngineState.UNREACHABLE:
                self.restarts += 1
        self.state = state
        self.last_error = error
        self.ready_since = (self.ready_since or time.time()) if state is EngineState.READY else None
        self._on_change()

    def _run(self) -> None:
        client, self._base = sync_client(self.url, timeout=httpx.Timeout(2.0, connect=1.0))
        with client:
            while not self._stop.is_set():
                try:
                    ok = client.get(f"{self._base}/health").status_code == 200
                    if ok and (not self.served_model_name or not self.model):
                        self._describe(client)
                    if ok:
                        self._set(EngineState.READY)
                    else:
                        self._set(EngineState.UNREACHABLE, "health check failed")
                except (httpx.HTTPError, ValueError) as exc:
                    never_seen = self.state is EngineState.STARTING
                    self._set(EngineState.STARTING if never_seen else EngineState.UNREACHABLE, type(exc).__name__)
                self._stop.wait(self.interval_s)


def _generic(family: ModelFamily) -> ModelFormat:
    """The format that stands for a whole family when only the family is known (--model-family)."""
    return FORMATS[{"bi-encoder": "bi-encoder", "cross-encoder": "cross-encoder"}.get(family.name, "qwen3-reranker")]
