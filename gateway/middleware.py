"""ASGI middleware: request id, body (read once, size-limited, parsed once), the dialect (decided
once), auth (the keys: gateway.keys), cancel on disconnect, one log line, metrics.

Limits applied here, before any route (and so before any engine work) runs:
- the body: at most --max-body-bytes (413), JSON (orjson refuses more than 1024 levels), an
  object, nested at most MAX_JSON_DEPTH containers deep (400, param "body"). Every later step
  (pydantic, `json.dumps` of object documents, orjson rendering `return_documents`, which refuses
  more than 255 levels) can then assume shallow values;
- the request id: a client's `X-Request-Id` is echoed and logged only when it matches
  REQUEST_ID_PATTERN; otherwise the request gets a new uuid4 hex id (the client's is dropped).

Pure ASGI (not BaseHTTPMiddleware) so it can buffer the body once with a size limit and then
watch the connection: when the client goes away, the handler (and with it the engine call) is
cancelled. Routes read `request.state.json` (the parsed body), `request.state.dialect`
and `request.state.stats` (the pipeline's observer); every error is rendered by gateway.errors.

The fast path: a POST to a path of `answers` (the rerank and score paths, gateway/routes) is
answered here, by calling that path's answer in this task, without the app below: no routing,
dependency solving, exit stacks or exception middleware per request, and no second task (the
connection is watched by a small task that cancels this one if the client goes away). The
routes call the same answers, so both give the same bytes (tests/unit/gateway/test_fast_path.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compat.detect import VENDOR_PATHS, dialect_of
from compat.errors import CompatError
from gateway.errors import BodyTooLargeError, RenderedError, UnauthorizedError, render_error
from gateway.keys import KeyStore
from gateway.metrics import METRICS, RequestStats, count_request
from gateway.tracing import Tracing

__all__ = [
    "INFERENCE_PATHS",
    "MAX_JSON_DEPTH",
    "OPS_PATHS",
    "REQUEST_ID_PATTERN",
    "FastAnswer",
    "GatewayMiddleware",
    "check_depth",
    "load_body",
    "parse_body",
    "request_id",
]

log = logging.getLogger("vllm_rerank.access")

INFERENCE_PATHS = frozenset(
    {"/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score", "/v1/models", "/models", *VENDOR_PATHS}
)
OPS_PATHS = frozenset({"/health", "/v1/health", "/metrics", "/info"})
JSON_PATHS = frozenset({"/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score", *VENDOR_PATHS})


# Containers (objects and arrays) a body may nest, the body itself included. Real requests need
# a handful; 64 leaves documents and `meta` room and keeps every response far below orjson's 255.
MAX_JSON_DEPTH = 64

# A client's X-Request-Id is used (echoed, logged, returned as the response id) only if it matches.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id(header: str | None) -> str:
    """The client's id when it is well formed (REQUEST_ID_PATTERN, whole), else a new uuid4 hex."""
    if header and REQUEST_ID_PATTERN.fullmatch(header):
        return header
    return uuid.uuid4().hex


def load_body(raw: bytes) -> dict[str, Any]:
    """Raises: CompatError (400) for a body that is not a JSON object."""
    if not raw.strip():
        raise CompatError("invalid request: the body is empty; send a JSON object", param="body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CompatError(f"invalid request: the body is not valid JSON ({exc})", param="body") from None
    if not isinstance(data, dict):
        raise CompatError("invalid request: the body must be a JSON object", param="body")
    return data


def check_depth(data: object, limit: int = MAX_JSON_DEPTH, *, raw: bytes | None = None) -> None:
    """Raises: CompatError (400) when containers nest more than `limit` deep (the outermost is level 1).

    Level by level, without recursion; scalars are skipped, so a wide body costs one pass. `raw`
    (the JSON text of `data`): a body with at most `limit` brackets in all cannot be too deep, and
    is not walked (most bodies: documents as strings)."""
    if raw is not None and raw.count(b"{") + raw.count(b"[") <= limit:
        return
    level: list[Any] = [data] if type(data) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            raise CompatError(f"invalid request: the body is nested deeper than {limit} levels", param="body")
        deeper: list[Any] = []
        for container in level:
            for value in container.values() if type(container) is dict else container:
                if type(value) is dict or type(value) is list:
                    deeper.append(value)
        level = deeper


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, at most MAX_JSON_DEPTH deep. Raises: CompatError (400)."""
    data = load_body(raw)
    check_depth(data, raw=raw)
    return data


# A path's answer (gateway.routes.rerank.Answer): (the runtime, the request's state) -> the 200's JSON body.
FastAnswer = Callable[[Any, dict[str, Any]], Awaitable[bytes]]
_JSON_200 = b"application/json"


def error_headers(err: RenderedError) -> list[tuple[bytes, bytes]]:
    """The headers of an error answer as a route's exception handler sends them (starlette's
    `Response(headers=dict(err.headers), media_type="application/json")`)."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in dict(err.headers).items()]
    return [*headers, (b"content-length", str(len(err.body)).encode()), (b"content-type", _JSON_200)]


class GatewayMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        keys: KeyStore,
        protect_ops: bool,
        max_body_bytes: int,
        tracing: Tracing | None = None,
        answers: Mapping[str, FastAnswer] | None = None,
        runtime: Callable[[], Any] | None = None,
    ) -> None:
        self.app = app
        self.keys = keys
        self.protect_ops = protect_ops
        self.max_body_bytes = max_body_bytes
        self.tracing = tracing  # None: tracing off, nothing traced
        # POST paths answered here (module docstring); `runtime()` is what their answers get
        self.answers: Mapping[str, FastAnswer] = answers if answers is not None and runtime is not None else {}
        self.runtime: Callable[[], Any] = runtime or (lambda: None)

    async def _reply(self, send: Send, scope: Scope, exc: Exception) -> int:
        state = scope["state"]
        err = render_error(exc, dialect=state["dialect"], request_id=state["request_id"])
        state["error"] = err.message
        headers = [(b"content-type", b"application/json"), (b"x-request-id", state["request_id"].encode())]
        headers += [(k.lower().encode(), v.encode()) for k, v in err.headers]
        if scope["path"] in JSON_PATHS:
            headers += state["stats"].timing_headers(time.perf_counter())
        await send({"type": "http.response.start", "status": err.status, "headers": headers})
        await send({"type": "http.response.body", "body": err.body})
        return err.status

    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole body, or None when the client went away. Raises: BodyTooLargeError."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLargeError(f"request body too large: more than {self.max_body_bytes} bytes")
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        path: str = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = request_id(headers.get("x-request-id"))
        stats = RequestStats(self.tracing, t0)
        state = scope.setdefault("state", {})
        state.update(request_id=rid, stats=stats, dialect=dialect_of(path, None, headers))
        route = path if path in INFERENCE_PATHS or path in OPS_PATHS else "other"
        status = 500
        inference = path in INFERENCE_PATHS
        if inference:
            METRICS.inflight_requests.inc()
        try:
            if self.tracing is None:
                status = await self._handle(scope, receive, send, path, headers, inference)
            else:
                with self.tracing.request(scope["method"], path, headers) as span:
                    status = await self._handle(scope, receive, send, path, headers, inference)
                    span.set_attribute("http.response.status_code", status)
                    span.set_attribute("vllm_rerank.request_id", rid)
                    span.set_attribute("vllm_rerank.dialect", str(state["dialect"]))
        finally:
            if inference:
                METRICS.inflight_requests.dec()
            self._account(scope, route, status, stats, time.perf_counter() - t0, rid)

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, path: str, headers: dict[str, str], inference: bool
    ) -> int:
        """Read the body, decide the dialect, check the key, run the app; returns the status sent."""
        state = scope["state"]
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            return await self._reply(
                send,
                scope,
                BodyTooLargeError(f"request body too large: {length} bytes > {self.max_body_bytes} allowed"),
            )
        body = b""
        if scope["method"] in ("POST", "PUT", "PATCH"):
            try:
                read = await self._read_body(receive)
            except BodyTooLargeError as exc:
                return await self._reply(send, scope, exc)
            if read is None:
                return 499
            body = read
        body_error: CompatError | None = None
        if path in JSON_PATHS and scope["method"] == "POST":
            data: dict[str, Any] | None = None
            try:
                data = load_body(body)
                check_depth(data, raw=body)
            except CompatError as exc:
                body_error = exc
            else:
                state["json"] = data
            # a body too deep to use still names its dialect by its top-level keys
            state["dialect"] = dialect_of(path, data, headers)
        if self.keys.enabled and (inference or (self.protect_ops and path in OPS_PATHS)):
            auth = headers.get("authorization")
            if auth is None and state["dialect"] == "pinecone" and "api-key" in headers:
                auth = f"Bearer {headers['api-key']}"  # Pinecone clients send the key as `Api-Key`
            if not self.keys.check(auth):
                message = "no api key supplied" if auth is None else "invalid api token"
                return await self._reply(send, scope, UnauthorizedError(message))
        if body_error is not None:
            return await self._reply(send, scope, body_error)
        answer = self.answers.get(path) if scope["method"] == "POST" else None
        if answer is not None:
            return await self._answer(scope, receive, send, answer)
        return await self._run(scope, receive, send, body, state["request_id"])

    async def _answer(self, scope: Scope, receive: Receive, send: Send, answer: FastAnswer) -> int:
        """The fast path: the answer runs in this task; a small task watches the connection and
        cancels this one when the client goes away (499, nothing sent). Returns the status sent."""
        state = scope["state"]
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            try:
                body = await answer(self.runtime(), state)
            except asyncio.CancelledError:
                if not gone:
                    raise
                task.uncancel()
                METRICS.disconnects.inc()
                return 499
            except Exception as exc:
                err = render_error(exc, dialect=state["dialect"], request_id=state["request_id"])
                state["error"] = err.message
                status, body, headers = err.status, err.body, error_headers(err)
            else:
                status, headers = 200, [(b"content-length", str(len(body)).encode()), (b"content-type", _JSON_200)]
        finally:
            watcher.cancel()
        if gone:  # the answer came, but the client went away while it was being made (its cancel is undone)
            task.uncancel()
            METRICS.disconnects.inc()
            return 499
        headers.append((b"x-request-id", state["request_id"].encode()))
        headers += state["stats"].timing_headers(time.perf_counter())
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return status

    async def _run(self, scope: Scope, receive: Receive, send: Send, body: bytes, rid: str) -> int:
        delivered = False
        answered = False  # the whole response was sent
        disconnected = asyncio.Event()
        status = 500

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        timed = scope["path"] in JSON_PATHS
        stats: RequestStats = scope["state"]["stats"]

        async def wrapped_send(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                if timed:  # TEI's timing headers on every scoring response
                    message["headers"] += stats.timing_headers(time.perf_counter())
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
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
            return status
        if answered:  # the client closed after the whole answer (a file response still winding down)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await app_task
            return status
        app_task.cancel()
        METRICS.disconnects.inc()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # the client is gone; nothing to answer
            await app_task
        return 499

    def _account(self, scope: Scope, route: str, status: int, stats: RequestStats, elapsed: float, rid: str) -> None:
        state = scope.get("state", {})
        dialect = str(state.get("dialect"))
        label = dialect if route in JSON_PATHS else ""  # health, metrics, models...: no dialect
        count_request(route, label, str(status), stats.model_name, elapsed)
        if status in (429, 503):
            METRICS.rejected.labels(str(status), "engine_unavailable" if status == 503 else "overloaded").inc()
        if stats.documents_n is not None:
            METRICS.documents.observe(stats.documents_n)
        if stats.tokens_n is not None:
            METRICS.tokens.observe(stats.tokens_n)
            METRICS.tokens_total.inc(stats.tokens_n)
        if route in OPS_PATHS and status == 200:
            return  # probes and scrapes stay out of the request log
        log.info(
            "request_completed request_id=%s method=%s path=%s dialect=%s model=%s documents=%s tokens=%s "
            "status=%d latency_ms=%.2f%s",
            rid,
            scope.get("method"),
            scope.get("path"),
            label or "-",
            stats.model_name or "-",
            "-" if stats.documents_n is None else stats.documents_n,
            "-" if stats.tokens_n is None else stats.tokens_n,
            status,
            elapsed * 1000,
            f" error={state['error']!r}" if state.get("error") else "",
        )
