"""The HTTP hop to engines: `HttpTransport`, a lean pooled HTTP/1.1 client on asyncio and httptools
(the hot path: ~5x less CPU per call than aiohttp, which was ~15x less than httpx; bench/gateway_cost.py).
`AiohttpTransport` stays as the reference implementation of the same contract.

    TransportError
    ├── ConnectFailed     the connection could not be made (refused, connect timeout): retryable
    ├── ConnectionLost    the connection broke before an answer (reset, disconnect): retryable
    └── ReadTimeout       no answer within the deadline: not retried

A transport is anything with `post(url, body, *, timeout, connect_timeout) -> (status, bytes)`,
`get(url, *, timeout) -> (status, bytes)` and `aclose()`; tests pass `CallableTransport`.

`CALL_HEADERS` holds headers to add to the engine calls made in the current context (the gateway sets a
W3C `traceparent` there while tracing; None, the default, adds nothing and costs one lookup).
"""

from __future__ import annotations

import asyncio
import contextvars
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Protocol
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import httptools
import httpx

__all__ = [
    "CALL_HEADERS",
    "UNIX_SCHEME",
    "AiohttpTransport",
    "CallableTransport",
    "ConnectFailed",
    "ConnectionLost",
    "HttpTransport",
    "ReadTimeout",
    "Transport",
    "TransportError",
    "sync_client",
    "unix_socket_of",
    "unix_url",
]

CALL_HEADERS: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "engine_call_headers", default=None
)

# An engine on a Unix socket: http+unix://<percent-encoded socket path>/<http path>.
UNIX_SCHEME = "http+unix"


def unix_url(socket_path: str) -> str:
    return f"{UNIX_SCHEME}://{quote(socket_path, safe='')}"


def unix_socket_of(url: str) -> tuple[str | None, str]:
    """(socket path or None, the URL to send over it): `http+unix://%2Frun%2Fe.sock/score` →
    ("/run/e.sock", "http://localhost/score"); any other URL → (None, url)."""
    if not url.startswith(UNIX_SCHEME + "://"):
        return None, url
    parts = urlsplit(url)
    rest = parts.path + (f"?{parts.query}" if parts.query else "")
    return unquote(parts.netloc), f"http://localhost{rest}"


def sync_client(url: str, *, timeout: httpx.Timeout) -> tuple[httpx.Client, str]:
    """A blocking client for health checks of the engine at `url`, and the base URL to use with it."""
    socket_path, base = unix_socket_of(url)
    transport = httpx.HTTPTransport(uds=socket_path) if socket_path else None
    return httpx.Client(timeout=timeout, transport=transport), base.rstrip("/")


class TransportError(Exception):
    pass


class ConnectFailed(TransportError):
    pass


class ConnectionLost(TransportError):
    pass


class ReadTimeout(TransportError):
    pass


class Transport(Protocol):
    async def post(self, url: str, body: bytes, *, timeout: float, connect_timeout: float) -> tuple[int, bytes]: ...

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class AiohttpTransport:
    """One pooled keep-alive session per worker process (created on first use, inside the loop)."""

    _HEADERS: ClassVar[dict[str, str]] = {"content-type": "application/json"}

    def __init__(self, *, max_connections: int = 512, keepalive_s: float = 3.0) -> None:
        # vLLM's uvicorn closes idle keep-alive connections after 5 s: expire ours first.
        self._max_connections = max_connections
        self._keepalive_s = keepalive_s
        self._sessions: dict[str | None, aiohttp.ClientSession] = {}  # by Unix socket path; None: TCP

    def _get_session(self, socket_path: str | None) -> aiohttp.ClientSession:
        session = self._sessions.get(socket_path)
        if session is None or session.closed:
            connector: aiohttp.BaseConnector
            if socket_path is None:
                connector = aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=self._keepalive_s, ttl_dns_cache=300
                )
            else:
                connector = aiohttp.UnixConnector(
                    path=socket_path, limit=self._max_connections, keepalive_timeout=self._keepalive_s
                )
            session = self._sessions[socket_path] = aiohttp.ClientSession(connector=connector, auto_decompress=False)
        return session

    async def _request(
        self, method: str, url: str, body: bytes | None, timeout: aiohttp.ClientTimeout
    ) -> tuple[int, bytes]:
        socket_path, url = unix_socket_of(url)
        extra = CALL_HEADERS.get()
        headers = self._HEADERS if extra is None else {**self._HEADERS, **extra}
        try:
            async with self._get_session(socket_path).request(
                method, url, data=body, headers=headers, timeout=timeout
            ) as resp:
                return resp.status, await resp.read()
        except aiohttp.ConnectionTimeoutError as exc:
            raise ConnectFailed(f"connect timeout: {url}") from exc
        except aiohttp.ClientConnectorError as exc:
            raise ConnectFailed(f"cannot connect: {exc}") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ReadTimeout(f"no answer from {url} in time") from exc
        except aiohttp.ClientError as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc

    async def post(self, url: str, body: bytes, *, timeout: float, connect_timeout: float) -> tuple[int, bytes]:
        return await self._request(
            "POST", url, body, aiohttp.ClientTimeout(total=timeout, sock_connect=connect_timeout)
        )

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        return await self._request("GET", url, None, aiohttp.ClientTimeout(total=timeout))

    async def aclose(self) -> None:
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an engine, answering one request at a time (httptools parses)."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[tuple[int, bytes]] | None = None
        self.chunks: list[bytes] = []
        self.status = 0
        self.keep_alive = False
        self.until_close = False  # neither content-length nor chunked: the body ends with the connection
        self._framed = False
        self.closed = False
        self.idle_since = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.until_close and self.status:
            self._finish()  # the body was everything up to the close
        else:
            self._fail(ConnectionLost(f"the engine closed the connection: {exc or 'EOF'}"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionLost(f"unreadable HTTP answer: {exc}"))
            self.close()

    # ------------------------------------------------------------------ httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._framed = True

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.until_close = not self._framed

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.until_close = False
        self._finish()

    # ------------------------------------------------------------------ requests
    def send(self, head_and_body: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[tuple[int, bytes]]:
        self.chunks = []
        self.status = 0
        self._framed = self.until_close = False
        self.answer = loop.create_future()
        assert self.transport is not None
        self.transport.write(head_and_body)
        return self.answer

    def _finish(self) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result((self.status, b"".join(self.chunks)))

    def _fail(self, exc: Exception) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(exc)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reusable(self) -> bool:
        return self.keep_alive and not self.closed and self.transport is not None and not self.transport.is_closing()


def _unsafe(name: str, value: str) -> bool:
    """A header that would break the request head (CR or LF): left out."""
    return any(c in name or c in value for c in "\r\n")


# A pool of connections: (Unix socket path or None, host, port, TLS).
_Key = tuple[str | None, str, int, bool]


class HttpTransport:
    """A pooled keep-alive HTTP/1.1 client for the engines (TCP or Unix socket): a request is one
    write of a pre-built head and the body, its answer parsed by httptools (C), and no per-request
    machinery beyond that (aiohttp spends most of a loopback call in its own Python: URL and header
    objects, cookie jar, tracing, timers, payload registry).

    Idle connections are reused newest first and dropped after `keepalive_s` (vLLM's uvicorn closes
    idle keep-alive connections after 5 s: expire ours first); at most `max_connections` requests
    are in flight (more wait for one to finish). A connection is reused only after a complete answer;
    one that is cancelled, timed out or broken mid-request is closed."""

    def __init__(self, *, max_connections: int = 512, keepalive_s: float = 3.0) -> None:
        self._keepalive_s = keepalive_s
        self._max_connections = max_connections
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Key, list[_Connection]] = {}
        self._targets: dict[str, tuple[_Key, bytes]] = {}
        self._open: set[_Connection] = set()
        self._tls: ssl.SSLContext | None = None  # for https engines (--engine-url), made on first use

    def _target(self, url: str) -> tuple[_Key, bytes]:
        """(pool key: socket path, host, port, TLS; the request line's target and host header), cached per URL."""
        hit = self._targets.get(url)
        if hit is None:
            socket_path, http_url = unix_socket_of(url)
            parts = urlsplit(http_url)
            tls = socket_path is None and parts.scheme == "https"
            host = parts.hostname or "localhost"
            port = parts.port or (443 if tls else 80)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            name = f"[{host}]" if ":" in host else host  # an IPv6 address is bracketed in the host header
            netloc = name if socket_path or parts.port is None else f"{name}:{port}"
            hit = self._targets[url] = ((socket_path, host, port, tls), f"{target} HTTP/1.1\r\nhost: {netloc}".encode())
            if len(self._targets) > 1024:  # engine URLs are few; never grow without bound
                self._targets.clear()
        return hit

    async def _connect(self, key: _Key, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        socket_path, host, port, tls = key
        try:
            async with asyncio.timeout(timeout):
                if socket_path is not None:
                    _, conn = await loop.create_unix_connection(_Connection, socket_path)
                elif tls:
                    if self._tls is None:
                        self._tls = ssl.create_default_context()
                    _, conn = await loop.create_connection(_Connection, host, port, ssl=self._tls)
                else:
                    _, conn = await loop.create_connection(_Connection, host, port)
        except TimeoutError as exc:
            raise ConnectFailed(f"connect timeout: {socket_path or f'{host}:{port}'}") from exc
        except OSError as exc:
            raise ConnectFailed(f"cannot connect to {socket_path or f'{host}:{port}'}: {exc}") from exc
        return conn

    def _checkout(self, key: _Key) -> _Connection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.reusable() and now - conn.idle_since < self._keepalive_s:
                return conn
            conn.close()
            self._open.discard(conn)
        return None

    async def _request(
        self, method: bytes, url: str, body: bytes | None, *, timeout: float, connect_timeout: float
    ) -> tuple[int, bytes]:
        key, line = self._target(url)
        head = method + b" " + line
        extra = CALL_HEADERS.get()
        if extra:
            head += "".join(f"\r\n{k}: {v}" for k, v in extra.items() if not _unsafe(k, v)).encode("latin-1")
        if body is not None:
            head += b"\r\ncontent-type: application/json\r\ncontent-length: %d" % len(body)
        payload = head + b"\r\n\r\n" + (body or b"")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:  # the wait for a free slot counts against the timeout too, and sends nothing if it runs out
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError as exc:
            raise ReadTimeout(f"no connection to {url} free in time ({self._max_connections} in flight)") from exc
        try:
            conn = self._checkout(key)
            if conn is None:
                conn = await self._connect(key, max(0.001, min(connect_timeout, deadline - loop.time())))
                self._open.add(conn)
            done = False
            try:
                remaining = deadline - loop.time()
                if remaining <= 0:  # connecting took the time left: send nothing the engine would work on
                    raise ReadTimeout(f"no answer from {url} in time")
                answer = conn.send(payload, loop)
                try:
                    async with asyncio.timeout(remaining):
                        result = await answer
                except TimeoutError as exc:
                    raise ReadTimeout(f"no answer from {url} in time") from exc
                done = True
                return result
            finally:
                if done and conn.reusable():
                    conn.idle_since = time.monotonic()
                    self._idle.setdefault(key, []).append(conn)
                else:  # failed, cancelled or not keep-alive: never reuse a connection mid-answer
                    conn.close()
                    self._open.discard(conn)
        finally:
            self._slots.release()

    async def post(self, url: str, body: bytes, *, timeout: float, connect_timeout: float) -> tuple[int, bytes]:
        return await self._request(b"POST", url, body, timeout=timeout, connect_timeout=connect_timeout)

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        return await self._request(b"GET", url, None, timeout=timeout, connect_timeout=timeout)

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()


class CallableTransport:
    """A transport backed by a function `(method, url, body) -> (status, bytes)` (tests, fuzzing)."""

    def __init__(self, fn: Callable[[str, str, bytes | None], Awaitable[tuple[int, bytes]] | tuple[int, bytes]]):
        self._fn = fn

    async def _call(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        out = self._fn(method, url, body)
        if asyncio.iscoroutine(out) or isinstance(out, Awaitable):
            return await out
        return out

    async def post(self, url: str, body: bytes, *, timeout: float, connect_timeout: float) -> tuple[int, bytes]:
        return await self._call("POST", url, body)

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        return await self._call("GET", url, None)

    async def aclose(self) -> None:
        return None
