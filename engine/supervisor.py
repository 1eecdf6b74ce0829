"""Supervise one engine process: start, wait for readiness, restart on crash, stop.

States:  STARTING → READY → (crash) RESTARTING → READY ... ; FAILED (first start failed, or
too many crashes in a window); STOPPED (after stop()). Every change is published through
`on_change(snapshot)` so other processes (gateway workers) can see it. An engine is READY once its
/health answers 200 *and* it has answered a warm-up shaped like real traffic (engine.warmup), so
the first user request is as fast as the next. While it loads, `engine_loading` lines name the
stage its own output has reached (engine.logs) and the time elapsed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from engine.config import EngineConfig
from engine.errors import EngineStartError
from engine.gpu_starts import STARTS as _STARTS
from engine.gpu_starts import engine_cards, smaller
from engine.process import EngineProcess, classify_failure, exit_cause
from engine.restart import RestartPolicy
from engine.snapshot import EngineSnapshot, EngineState
from engine.transport import sync_client
from engine.warmup import Warmup, warm_up

__all__ = ["EngineSupervisor", "RestartPolicy"]

log = logging.getLogger("vllm_rerank.engine")


class EngineSupervisor:
    """Owns one `EngineProcess` and keeps it running."""

    def __init__(
        self,
        config: EngineConfig,
        *,
        ready_timeout_s: float = 600.0,
        stop_grace_s: float = 15.0,
        policy: RestartPolicy | None = None,
        health_interval_s: float = 5.0,
        health_failures: int = 3,
        hang_timeout_s: float = 30.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.policy = policy or RestartPolicy()
        self.health_interval_s = health_interval_s
        self.health_failures = health_failures
        self.hang_timeout_s = hang_timeout_s
        self.start_seconds: float | None = None  # how long the last start took (Retry-After while restarting)
        self._on_change = on_change or (lambda: None)
        self.state = EngineState.STOPPED
        self.restarts = 0
        self.last_error: str | None = None
        self.start_error: EngineStartError | None = None
        self.ready_since: float | None = None
        self.max_model_len: int | None = None
        self.warmup: Warmup | None = None  # the last start's warm-up
        self._proc: EngineProcess | None = None
        self._base = config.url
        self._stop = threading.Event()
        self._first_done = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ public API
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"supervise-{self.config.name}", daemon=True)
        self._thread.start()

    def wait_first_start(self, timeout: float | None = None) -> bool:
        """Block until the first start succeeded (True) or failed/stopped (False)."""
        self._first_done.wait(timeout)
        return self.state == EngineState.READY

    def stop(self) -> None:
        """Stop supervising and stop the engine (SIGTERM, grace, SIGKILL of its group)."""
        self._stop.set()
        with self._lock:
            proc = self._proc
        if proc is not None:
            proc.stop(self.stop_grace_s)
        if self._thread is not None:
            self._thread.join(self.stop_grace_s + 10)
        self._set(EngineState.STOPPED)

    @property
    def pid(self) -> int | None:
        with self._lock:
            return self._proc.pid if self._proc and self._proc.alive() else None

    @property
    def name(self) -> str:
        return self.config.name

    def snapshot(self) -> EngineSnapshot:
        args = self.config.effective_args()
        if self.max_model_len is not None:  # what the engine reported, once it is up
            args = args.model_copy(update={"max_model_len": self.max_model_len})
        return EngineSnapshot(
            name=self.config.name,
            url=self.config.url,
            managed=True,
            state=self.state,
            model=self.config.model,
            served_model_name=self.config.served_model_name,
            family=self.config.family,
            format=self.config.format_name,
            prompt_format=self.config.prompt_format,
            logit_offset=self.config.logit_offset,
            args=args,
            pid=self.pid,
            restarts=self.restarts,
            last_error=self.last_error,
            ready_since=self.ready_since,
            start_seconds=self.start_seconds,
        )

    # ------------------------------------------------------------------ internals
    def _set(self, state: EngineState) -> None:
        if self.state != state:
            log.info("engine_state name=%s state=%s", self.config.name, state.value)
        self.state = state
        self.ready_since = time.time() if state == EngineState.READY else None
        self._on_change()

    def _spawn(self) -> EngineProcess:
        proc = EngineProcess(self.config)
        with self._lock:
            self._proc = proc
        proc.start()
        self._on_change()
        return proc

    def _wait_ready(self, proc: EngineProcess, client: httpx.Client) -> EngineStartError | None:
        deadline = time.monotonic() + self.ready_timeout_s
        next_note = time.monotonic() + 15
        while not self._stop.is_set():
            rc = proc.poll()
            if rc is not None:
                proc.flush_log()
                cause, line = classify_failure(list(proc.tail))
                return EngineStartError(f"engine exited with code {rc} during start ({cause}): {line}", cause=cause)
            if self._healthy(client):
                log.info("engine_up name=%s url=%s after=%.1fs", self.config.name, self.config.url, proc.elapsed())
                return None
            if time.monotonic() > deadline:
                return EngineStartError(
                    f"engine not ready after {self.ready_timeout_s:.0f}s (raise --ready-timeout for large models)",
                    cause="timeout",
                )
            if time.monotonic() > next_note:
                log.info(
                    "engine_loading name=%s stage=%r elapsed=%.0fs last=%s",
                    self.config.name,
                    proc.stage,
                    proc.elapsed(),
                    (proc.tail[-1][:160] if proc.tail else ""),
                )
                next_note = time.monotonic() + 15
            self._stop.wait(0.25)
        return EngineStartError("stopped during start", cause="stopped")

    def _warm_up(self, proc: EngineProcess, client: httpx.Client) -> None:
        """The warm-up before READY (engine.warmup); a failed one is logged, and the engine still
        serves (the hang checks watch it from now on)."""
        left = max(30.0, self.ready_timeout_s - proc.elapsed())
        w = warm_up(client, self._base, self.config, timeout=left)
        self.warmup = w
        if w.error:
            log.warning("engine_warmup_failed name=%s after=%.1fs error=%s", self.config.name, w.seconds, w.error[:300])
        else:
            log.info(
                "engine_warmed name=%s requests=%d documents=%d seconds=%.2f",
                self.config.name,
                w.requests,
                w.documents,
                w.seconds,
            )
        self.start_seconds = proc.elapsed()
        log.info("engine_ready name=%s url=%s after=%.1fs", self.config.name, self.config.url, self.start_seconds)

    def _describe(self, client: httpx.Client) -> None:
        """Read the engine's effective max_model_len (the gateway sizes truncation with it)."""
        try:
            data = client.get(f"{self._base}/v1/models").json()
            self.max_model_len = int(data["data"][0]["max_model_len"])
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError):
            self.max_model_len = None

    def _healthy(self, client: httpx.Client) -> bool:
        try:
            return client.get(f"{self._base}/health").status_code == 200
        except httpx.HTTPError:
            return False

    def _progress(self, client: httpx.Client) -> tuple[bool, float] | None:
        """(work pending, prompt tokens processed so far) from the engine's own metrics, or None when
        they cannot be read. vLLM's API server answers /health (and /metrics) even while its
        EngineCore is stuck, so liveness needs proof of work, not an answer."""
        try:
            r = client.get(f"{self._base}/metrics")
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        pending = 0.0
        tokens = 0.0
        found = False
        for line in r.text.splitlines():
            if line.startswith(("vllm:num_requests_running", "vllm:num_requests_waiting")):
                pending += _sample_value(line)
                found = True
            elif line.startswith("vllm:prompt_tokens_total"):
                tokens += _sample_value(line)
        return (pending > 0, tokens) if found else None

    def _probe(self, client: httpx.Client) -> bool:
        """One tiny real scoring call, answered within the hang timeout."""
        body = {"model": self.config.served_model_name, "text_1": "ping", "text_2": ["ping"]}
        try:
            r = client.post(f"{self._base}/score", json=body, timeout=max(1.0, self.hang_timeout_s))
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def _monitor(self, proc: EngineProcess, client: httpx.Client) -> None:
        """Return when the process died, hung or stop() was called.

        Hung: /health failed `health_failures` times in a row, or the engine core made no progress for
        `hang_timeout_s`: work was pending and no prompt token was processed, or (when idle) a tiny
        scoring probe got no answer. A hung engine is marked restarting at once (no new requests go to
        it; requests waiting on it fail over or get 503 + Retry-After when it is killed) and restarted."""
        misses = 0
        next_check = time.monotonic() + self.health_interval_s
        stalled_since: float | None = None
        last_tokens: float | None = None
        while not self._stop.is_set() and proc.alive():
            self._stop.wait(0.2)
            if time.monotonic() < next_check or not proc.alive() or self._stop.is_set():
                continue
            next_check = time.monotonic() + self.health_interval_s
            if self._healthy(client):
                misses = 0
            else:
                misses += 1
                if misses >= self.health_failures:
                    self._hung(proc, f"engine unhealthy for {misses} checks")
                    return
                continue
            if self.hang_timeout_s <= 0:
                continue
            checked_at = time.monotonic()
            progress = self._progress(client)
            if progress is not None and progress[0]:  # busy: is it getting anywhere?
                stalled = last_tokens is not None and progress[1] == last_tokens
                last_tokens = progress[1]
            else:  # idle, or no metrics: ask it to score something tiny
                last_tokens = progress[1] if progress is not None else None
                stalled = not self._probe(client)
            now = time.monotonic()
            if not stalled:
                stalled_since = None
            elif stalled_since is None:
                stalled_since = checked_at
            if stalled_since is not None and now - stalled_since >= self.hang_timeout_s:
                self._hung(proc, f"engine core made no progress for {now - stalled_since:.0f}s")
                return

    def _hung(self, proc: EngineProcess, why: str) -> None:
        self.last_error = f"{why}; restarting it"
        log.error("engine_hung name=%s %s", self.config.name, why)
        self._set(EngineState.RESTARTING)  # out of rotation before the (slow) kill
        proc.stop(1.0)

    def _retry_smaller(self, cards: frozenset[str]) -> bool:
        """Before the one out-of-memory retry: less memory, and a start alone on its cards once every other
        engine there is past its own first start. False when stopped meanwhile (nothing counted then)."""
        before, self.config = self.config.gpu_memory_utilization or 0.92, smaller(self.config)
        others = _STARTS.others(self.config.name, cards)
        log.warning(
            "engine_oom_retry name=%s gpu_memory_utilization %.2f -> %.2f%s",
            self.config.name,
            before,
            self.config.gpu_memory_utilization,
            f" (once {', '.join(others)} started)" if others else "",
        )
        if not _STARTS.begin_alone(self.config.name, cards, self._stop, self.ready_timeout_s):
            if self._stop.is_set():
                return False
            _STARTS.begin(self.config.name, cards)  # waited a whole start budget: retry anyway (end() follows)
        return True

    def _run(self) -> None:
        try:
            self._loop()
        finally:
            _STARTS.end(self.config.name)  # however the loop ended: no longer counted as starting

    def _loop(self) -> None:
        first = True
        oom_retried = False
        cards = engine_cards(self.config)
        client, self._base = sync_client(self.config.url, timeout=httpx.Timeout(2.0, connect=1.0))
        with client:
            while not self._stop.is_set():
                self._set(EngineState.STARTING if first else EngineState.RESTARTING)
                if cards is not None and first and not oom_retried:
                    _STARTS.begin(self.config.name, cards)  # a retry counted itself in _retry_smaller
                try:
                    proc = self._spawn()
                    err = self._wait_ready(proc, client)
                    if err is not None:
                        proc.stop(2.0)  # its memory is free before another engine's retry sizes its cache
                finally:
                    if cards is not None and first:
                        _STARTS.end(self.config.name)
                if self._stop.is_set():
                    break
                if err is not None:
                    self.last_error = err.message
                    if first and err.cause == "out_of_memory" and cards is not None and not oom_retried:
                        oom_retried = True
                        if not self._retry_smaller(cards):
                            break  # stopped while it waited
                        continue  # (stopped after: the loop ends, _run's finally uncounts it)
                    if first:
                        log.error("engine_start_failed name=%s cause=%s %s", self.config.name, err.cause, err.message)
                        self.start_error = err
                        self._set(EngineState.FAILED)
                        self._first_done.set()
                        return
                    # A restart that fails counts as another crash.
                    self.policy.record_crash(time.monotonic())
                else:
                    self._describe(client)
                    self._warm_up(proc, client)
                    if self._stop.is_set():
                        break
                    proc.note_shm()  # its segments, for the stop after a crash (engine.process)
                    self._set(EngineState.READY)
                    if first:
                        first = False
                        self._first_done.set()
                    ready_at_line = proc.lines
                    self._monitor(proc, client)
                    if self._stop.is_set():
                        break
                    rc = proc.poll()  # how it ended by itself, before our own SIGTERM/SIGKILL sweep
                    proc.stop(1.0)
                    rc = rc if rc is not None else proc.poll()
                    proc.flush_log()
                    new = proc.lines - ready_at_line
                    since = (
                        list(proc.tail)[-new:] if 0 < new <= len(proc.tail) else ([] if new <= 0 else list(proc.tail))
                    )
                    cause, line = exit_cause(rc, since)
                    self.last_error = self.last_error or f"{cause}: {line}"
                    log.error("engine_exited name=%s rc=%s cause=%s last=%s", self.config.name, rc, cause, line)
                    self.policy.record_crash(time.monotonic())
                if self.policy.exhausted:
                    log.error(
                        "engine_failed name=%s reason=too_many_crashes crashes=%d window=%.0fs",
                        self.config.name,
                        self.policy.max_crashes + 1,
                        self.policy.window_s,
                    )
                    self._set(EngineState.FAILED)
                    return
                self.restarts += 1
                self._set(EngineState.RESTARTING)
                delay = self.policy.delay()
                log.info("engine_restart name=%s in=%.1fs restarts=%d", self.config.name, delay, self.restarts)
                self._stop.wait(delay)
                self.last_error = None if not self._stop.is_set() else self.last_error
        self._first_done.set()


def _sample_value(line: str) -> float:
    try:
        return float(line.rsplit(" ", 1)[1])
    except (IndexError, ValueError):
        return 0.0
