"""ASGI middleware: request id, auth, body limit, cancel on disconnect, one log line, metrics.

Pure ASGI (not BaseHTTPMiddleware) so it can buffer the body once with a size limit and then
watch the connection: when the client goes away, the handler task (and with it the engine
call) is cancelled.
"""

from __future__ import annotations

import asyncio
import contextvars
import hmac
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compat.errors import error_body
from gateway.metrics import METRICS

__all__ = ["GatewayMiddleware", "KeyStore", "REQUEST_STATS", "dialect_for_path"]

log = logging.getLogger("vllm_rerank.access")

# Filled by the service during a request (documents, tokens); read by the log line and metrics.
REQUEST_STATS: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("request_stats", default=None)

INFERENCE_PATHS = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score", "/v1/models", "/models"})
OPS_PATHS = frozenset({"/health", "/v1/health", "/metrics"})


def dialect_for_path(path: str) -> str:
    if path == "/rerank":
        return "tei"
    if path in ("/score", "/v1/score", "/v1/models", "/models"):
        return "openai"
    return "cohere"


class KeyStore:
    """Accepted API keys from settings and an optional file (re-read when its mtime changes)."""

    def __init__(self, keys: tuple[str, ...], path: str | None) -> None:
        self._static = tuple(k for k in keys if k)
        self._path = Path(path) if path else None
        self._mtime = -1.0
        self._file_keys: tuple[str, ...] = ()
        self._checked = 0.0

    @property
    def enabled(self) -> bool:
        return bool(self._static) or self._path is not None

    def keys(self) -> tuple[str, ...]:
        if self._path is not None and time.monotonic() - self._checked > 1.0:
            self._checked = time.monotonic()
            try:
                mtime = self._path.stat().st_mtime
                if mtime != self._mtime:
                    lines = self._path.read_text().splitlines()
                    self._file_keys = tuple(x.strip() for x in lines if x.strip() and not x.startswith("#"))
                    self._mtime = mtime
            except OSError:
                self._file_keys = ()
        return self._static + self._file_keys

    def check(self, header: str | None) -> bool:
        """Constant-time comparison against every key (no early exit on the first match)."""
        if not header or not header.lower().startswith("bearer "):
            return False
        given = header[7:].strip().encode()
        ok = False
        for key in self.keys():
            ok |= hmac.compare_digest(given, key.encode())
        return ok


class GatewayMiddleware:
    def __init__(self, app: ASGIApp, *, keys: KeyStore, protect_ops: bool, max_body_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.protect_ops = protect_ops
        self.max_body_bytes = max_body_bytes

    async def _reply(
        self,
        send: Send,
        status: int,
        dialect: str,
        rid: str,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        body = orjson.dumps(error_body(dialect=dialect, status=status, message=message, request_id=rid))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"x-request-id", rid.encode()), *(headers or [])],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id") or uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        route = path if path in INFERENCE_PATHS or path in OPS_PATHS else "other"
        dialect = dialect_for_path(path)
        status_holder = {"status": 500}
        stats: dict[str, Any] = {}
        token = REQUEST_STATS.set(stats)
        inference = path in INFERENCE_PATHS
        if inference:
            METRICS.inflight_requests.inc()
        try:
            if self.keys.enabled and (inference or (self.protect_ops and path in OPS_PATHS)):
                if not self.keys.check(headers.get("authorization")):
                    status_holder["status"] = 401
                    msg = "no api key supplied" if "authorization" not in headers else "invalid api token"
                    await self._reply(send, 401, dialect, rid, msg, [(b"www-authenticate", b"Bearer")])
                    return
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
                status_holder["status"] = 413
                await self._reply(
                    send, 413, dialect, rid, f"request body too large: {length} bytes > {self.max_body_bytes} allowed"
                )
                return
            chunks: list[bytes] = []
            size = 0
            more = scope["method"] in ("POST", "PUT", "PATCH")
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    status_holder["status"] = 499
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    status_holder["status"] = 413
                    await self._reply(
                        send, 413, dialect, rid, f"request body too large: more than {self.max_body_bytes} bytes"
                    )
                    return
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            await self._run(scope, receive, send, body, rid, status_holder)
        finally:
            REQUEST_STATS.reset(token)
            if inference:
                METRICS.inflight_requests.dec()
            self._account(scope, route, status_holder["status"], stats, time.perf_counter() - t0, rid)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, rid: str, status_holder: dict[str, int]
    ) -> None:
        delivered = False
        disconnected = asyncio.Event()

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def wrapped_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        async def watch() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    disconnected.set()
                    return

        app_task = asyncio.ensure_future(self.app(scope, replay, wrapped_send))
        watch_task = asyncio.ensure_future(watch())
        try:
            done, _ = await asyncio.wait({app_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            app_task.cancel()
            watch_task.cancel()
            raise
        if app_task in done:
            watch_task.cancel()
            app_task.result()
            return
        app_task.cancel()
        status_holder["status"] = 499
        METRICS.disconnects.inc()
        try:
            await app_task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001 - the client is gone; nothing to answer
            pass

    def _account(self, scope: Scope, route: str, status: int, stats: dict[str, Any], elapsed: float, rid: str) -> None:
        state = scope.get("state", {})
        dialect = str(state.get("dialect") or dialect_for_path(scope.get("path", "")))
        METRICS.requests.labels(route, dialect, str(status)).inc()
        METRICS.latency.labels(route).observe(elapsed)
        if status in (429, 503):
            METRICS.rejected.labels(
                str(status), str(stats.get("reject_reason", "engine_unavailable" if status == 503 else "overloaded"))
            ).inc()
        if "documents" in stats:
            METRICS.documents.observe(stats["documents"])
        if "tokens" in stats:
            METRICS.tokens.observe(stats["tokens"])
            METRICS.tokens_total.inc(stats["tokens"])
        if route in OPS_PATHS and status == 200:
            return  # probes and scrapes stay out of the request log
        log.info(
            "request_completed request_id=%s method=%s path=%s dialect=%s documents=%s tokens=%s status=%d "
            "latency_ms=%.2f%s",
            rid,
            scope.get("method"),
            scope.get("path"),
            dialect,
            stats.get("documents", "-"),
            stats.get("tokens", "-"),
            status,
            elapsed * 1000,
            f" error={state['error']!r}" if state.get("error") else "",
        )
