"""The HTTP hop to engines, on aiohttp (the hot path: far less per-request CPU than httpx).

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
from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, Protocol
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import httpx

__all__ = [
    "CALL_HEADERS",
    "UNIX_SCHEME",
    "AiohttpTransport",
    "CallableTransport",
    "ConnectFailed",
    "ConnectionLost",
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
