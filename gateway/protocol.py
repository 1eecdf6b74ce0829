"""The per-connection HTTP protocol: uvicorn's, with the connection limits it lacks and a drain that drops nothing.

uvicorn's httptools protocol leaves a connection open for as long as the client likes until it
has sent a whole request head: its keep-alive timer is armed only after a response, and the first
byte of the next request cancels it; a request body that stops half-way is waited for forever;
`limit_concurrency` is checked only once a head is complete, so silent connections are never
refused and can hold every file descriptor. `GatewayHttpProtocol` adds, per connection:

- a head timeout (`--header-timeout`): no complete request head within that many seconds of the
  connection opening (or of the previous response) and the connection is closed (408 first when
  part of a head came);
- a body timeout (`--body-timeout`): a body not complete within that many seconds of its head is
  answered 408 and the connection closed; the app sees a disconnect;
- a cap on open connections (`--max-connections`, per worker): at the cap a new connection closes
  the oldest one that has no request in progress (nginx's reuse of idle connections), so a flood
  of silent sockets cannot lock real clients out; when every connection has a request in
  progress the new one is answered 503 + Retry-After and closed;
- one write per response (`_OneWrite`): uvicorn writes a response head as soon as it is sent and
  its body apart; uvloop sends each write at once, so that was two syscalls (and two TCP segments)
  per answer. The head is now held until the body's first write and both go out together;
- a drain that drops nothing (`shutdown`, called by uvicorn for each connection once SIGTERM has
  closed the listener): an idle keep-alive connection is kept `drain_idle_grace` s (1 s) for a
  request that is already on its way, which is answered with `Connection: close`; a request in
  progress gets `--stop-grace` s and then a 503 + Retry-After; uvicorn's own cancel follows 1 s
  later as a backstop.

The server around it (its config, the workers, the listening socket's drain) is gateway.server.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from compat.detect import dialect_of
from compat.errors import error_body
from gateway.metrics import METRICS

__all__ = ["ConnectionLimits", "GatewayHttpProtocol", "default_max_connections"]

MAX_DEFAULT_CONNECTIONS = 10_000


def default_max_connections(fd_soft_limit: int | None = None) -> int:
    """Connections per worker when --max-connections is not set: min(10000, fd limit - reserve), the
    reserve (a quarter of the limit, at most 1024) for the engine connections, files and the rest."""
    if fd_soft_limit is None:
        try:
            import resource

            fd_soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):  # pragma: no cover - not Linux
            fd_soft_limit = 1024
        if fd_soft_limit < 0:  # RLIM_INFINITY
            return MAX_DEFAULT_CONNECTIONS
    reserve = min(1024, fd_soft_limit // 4)
    return max(1, min(MAX_DEFAULT_CONNECTIONS, fd_soft_limit - reserve))


@dataclass(frozen=True)
class ConnectionLimits:
    """What one connection may cost (seconds; `max_connections` per worker process)."""

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = MAX_DEFAULT_CONNECTIONS
    drain_timeout: float = 15.0  # a request in progress at shutdown gets this long, then 503
    drain_idle_grace: float = 1.0  # an idle connection at shutdown is kept this long for a request on its way


def _plain_response(status: int, reason: str, body: bytes, extra: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in extra]
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _error(status: int, reason: str, message: str, *, path: str = "", retry_after: int | None = None) -> bytes:
    rid = uuid.uuid4().hex
    body = orjson.dumps(error_body(dialect=dialect_of(path, None), status=status, message=message, request_id=rid))
    extra = [("x-request-id", rid)]
    if retry_after is not None:
        extra.append(("retry-after", str(retry_after)))
    return _plain_response(status, reason, body, extra)


# Bodies up to this size are joined to their head (one copy, one write); larger ones go out with it
# in one writev (transport.writelines), not copied.
_JOIN_BELOW = 64 * 1024


class _OneWrite:
    """A request cycle's transport: the response head is held until the body's first write, and
    both go out in one write (module docstring). Every other use passes through."""

    __slots__ = ("_cycle", "_head", "_headed", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._headed = False  # the head has been written (or is held)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) < _JOIN_BELOW:
                self._transport.write(head + data)
            else:
                self._transport.writelines((head, data))
            return
        cycle = self._cycle
        if not self._headed and cycle.response_started:  # the head (100 Continue comes before it)
            self._headed = True
            if cycle.scope["method"] != "HEAD":  # a HEAD answer has no body write to wait for
                self._head = data
                return
        self._transport.write(data)

    def close(self) -> None:
        if self._head is not None:  # an app that stopped after its head: the head goes out, as before
            head, self._head = self._head, None
            self._transport.write(head)
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# Per server (one per worker): connections with no request in progress, oldest first.
_IDLE: weakref.WeakKeyDictionary[ServerState, dict[GatewayHttpProtocol, None]] = weakref.WeakKeyDictionary()


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head timeout, a body timeout, a connection cap and a
    drain that answers every request it has taken (module docstring)."""

    def __init__(
        self,
        config: uvicorn.Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = getattr(config, "limits", None)
        self.limits: ConnectionLimits = limits if isinstance(limits, ConnectionLimits) else ConnectionLimits()
        self._idle = _IDLE.setdefault(server_state, {})
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._head_started = False  # part of a request head has come
        self._draining = False
        self._drain_started = 0.0
        self._refused = False
        self._counted = False

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._evict_one():
            self._refuse()
            return
        self._counted = True
        METRICS.connections.inc()
        self._set_idle(True)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._body_timer, self._drain_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = self._drain_timer = None
        self._set_idle(False)
        if self._counted:
            self._counted = False
            METRICS.connections.dec()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    def _evict_one(self) -> bool:
        """Close the connection that has been idle longest (not this one); False when none is idle."""
        victim = next((c for c in self._idle if c is not self), None)
        if victim is None:
            return False
        victim._set_idle(False)
        METRICS.connections_closed.labels("evicted").inc()
        victim._close()
        return True

    def _refuse(self) -> None:
        self._refused = True
        METRICS.connections_closed.labels("refused").inc()
        message = f"too many open connections (--max-connections {self.limits.max_connections}); retry shortly"
        self.transport.write(_error(503, "Service Unavailable", message, retry_after=1))
        self._close()

    def _close(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def _set_idle(self, idle: bool) -> None:
        self._idle.pop(self, None)
        if idle:
            self._idle[self] = None  # re-inserted: the newest idle connection

    # ------------------------------------------------------------------ request head
    def _arm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_started = False
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or (self.cycle is not None and not self.cycle.response_complete):
            return
        METRICS.connections_closed.labels("header_timeout").inc()
        if self._head_started:
            message = f"request head not received within {self.limits.header_timeout:g} s"
            self.transport.write(_error(408, "Request Timeout", message))
        self._close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_started = True

    def on_headers_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._head_started = False
        self._set_idle(False)
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:
            return  # an upgrade: not ours to time
        cycle.transport = _OneWrite(self.transport, cycle)  # type: ignore[assignment]
        if self._draining:
            cycle.keep_alive = False
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    # ------------------------------------------------------------------ request body
    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or not cycle.more_body or cycle.response_started or self.transport.is_closing():
            return
        METRICS.connections_closed.labels("body_timeout").inc()
        message = f"request body not received within {self.limits.body_timeout:g} s"
        self._answer_instead(408, "Request Timeout", message)

    def _answer_instead(self, status: int, reason: str, message: str, retry_after: int | None = None) -> None:
        """Answer the request in progress ourselves and close; its app sees a disconnect."""
        cycle = self.cycle
        path = str(cycle.scope.get("path", ""))
        self.transport.write(_error(status, reason, message, path=path, retry_after=retry_after))
        cycle.disconnected = True  # the app's own answer, if any, is dropped
        cycle.keep_alive = False
        cycle.message_event.set()
        self._close()

    # ------------------------------------------------------------------ after a response
    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing() or not self.cycle.response_complete:
            return  # closed, or a pipelined request has started
        self._set_idle(True)
        self._arm_head_timer()
        if self._draining:  # a request that came during the drain was answered with Connection: close
            self._close()

    # ------------------------------------------------------------------ drain
    def shutdown(self) -> None:
        """Called once the listener is closed (SIGTERM). Idle: wait `drain_idle_grace` s for a request
        already on its way. In progress: no keep-alive, and `drain_timeout` s to answer."""
        self._draining = True
        self._drain_started = self.loop.time()
        if self.cycle is None or self.cycle.response_complete:
            self._drain_timer = self.loop.call_later(self.limits.drain_idle_grace, self._drain_idle_over)
        else:
            self.cycle.keep_alive = False
            self._drain_timer = self.loop.call_later(self.limits.drain_timeout, self._drain_over)

    def _drain_idle_over(self) -> None:
        self._drain_timer = None
        if (self.cycle is None or self.cycle.response_complete) and not self._head_started:
            self._close()
            return
        # a request came during the grace: it gets the rest of the drain
        left = self.limits.drain_timeout - (self.loop.time() - self._drain_started)
        self._drain_timer = self.loop.call_later(max(0.0, left), self._drain_over)

    def _drain_over(self) -> None:
        self._drain_timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.response_started:
            METRICS.connections_closed.labels("drain_timeout").inc()
            message = f"the service is stopping and this request did not finish within {self.limits.drain_timeout:g} s"
            self._answer_instead(503, "Service Unavailable", message, retry_after=1)
        else:
            self._close()
