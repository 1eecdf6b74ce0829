"""gateway/server.py and gateway/protocol.py: the connection limits and the drain, on a real uvicorn
server in this process (a tiny ASGI app on a loopback port, raw sockets as clients); and the engines'
/metrics cache.

Each server runs in its own thread with its own event loop (uvloop, as in the service) and is
stopped as SIGTERM stops it: `should_exit`, then uvicorn's shutdown with our drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.cli import parse_settings
from gateway.metrics import EngineMetricsCache
from gateway.protocol import ConnectionLimits, GatewayHttpProtocol, default_max_connections
from gateway.server import GatewayConfig, GatewayServer, limits_from
from gateway.settings import Settings, SettingsError
from tests.support.wait import wait_until
from tests.unit.engines import snapshot

GET = b"GET / HTTP/1.1\r\nhost: t\r\n\r\n"


class App:
    """`GET /` answers at once; `GET /block` waits for `release`; `POST /` echoes its body and records
    whether it saw the client go away; `GET /stall-loop` blocks the event loop itself for 0.6 s."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.blocked = threading.Event()
        self.disconnects = 0
        self.server: Server | None = None

    def _stall_in_the_next_poll(self, loop: asyncio.AbstractEventLoop) -> None:
        """Block the loop for 0.6 s inside an I/O callback, as a burst of requests does, and ask the
        server to stop there (as SIGTERM would): the next iteration runs uvicorn's shutdown (timers and
        ready callbacks come before the poll for new connections)."""
        r, w = socket.socketpair()
        w.send(b"x")

        def stall() -> None:
            loop.remove_reader(r)
            assert self.server is not None
            self.server.should_exit = True
            self.blocked.set()
            time.sleep(0.6)  # connections queue up in the kernel meanwhile
            r.close()
            w.close()

        loop.add_reader(r, stall)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b"ok"
        if scope["path"] == "/block":
            self.blocked.set()
            while not self.release.is_set():  # noqa: ASYNC110 - a thread's event; must not outlive a test's server
                await asyncio.sleep(0.01)
        elif scope["path"] == "/stall-loop":
            self._stall_in_the_next_poll(asyncio.get_running_loop())
        elif scope["method"] == "POST":
            chunks = []
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.disconnects += 1
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
        headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Running:
    def __init__(self, server: Server, thread: threading.Thread, app: App) -> None:
        self.server, self.thread, self.app = server, thread, app
        self.port = int(server.servers[0].sockets[0].getsockname()[1])

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "the server did not stop"


def start(limits: ConnectionLimits, *, http: type = GatewayHttpProtocol, stock: bool = False) -> Running:
    app = App()
    config = GatewayConfig(
        app,
        limits=limits,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http=http,
        timeout_keep_alive=30,  # longer than every timeout below: what closes a connection here is ours
        timeout_graceful_shutdown=int(limits.drain_timeout) + 1,
    )
    server: Server = Server(config) if stock else GatewayServer(config)
    app.server = server
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10, 0.01, message="server did not start")
    return Running(server, thread, app)


@contextlib.contextmanager
def serving(**limits: Any) -> Iterator[Running]:
    run = start(ConnectionLimits(**limits))
    try:
        yield run
    finally:
        if run.thread.is_alive():
            run.app.release.set()
            run.stop()


def read_response(s: socket.socket, timeout: float = 10) -> bytes:
    """Bytes until the server closes or one whole response (by content-length) has come."""
    s.settimeout(timeout)
    data = b""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                ),
                0,
            )
            if len(rest) >= length:
                return data
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def closed_by_server(s: socket.socket, timeout: float) -> tuple[bool, float, bytes]:
    """(closed, seconds it took, what came before the close) within `timeout`."""
    t0 = time.monotonic()
    s.settimeout(timeout)
    got = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True, time.monotonic() - t0, got
            got += chunk
    except TimeoutError:
        return False, time.monotonic() - t0, got
    except ConnectionResetError:
        return True, time.monotonic() - t0, got


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def header(response: bytes, name: bytes) -> bytes | None:
    for line in response.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


# ---------------------------------------------------------------------------------------- head timeout
def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    with serving(header_timeout=0.5) as running:
        closed, took, got = closed_by_server(running.connect(), 10)
        assert closed and got == b""
        assert 0.4 <= took < 3, took


def test_stock_uvicorn_leaves_a_silent_connection_open() -> None:
    """Why the subclass exists: uvicorn arms its keep-alive timer only after a response."""
    run = start(ConnectionLimits(header_timeout=0.5), http=HttpToolsProtocol, stock=True)
    try:
        closed, _, _ = closed_by_server(run.connect(), 1.5)  # three times our header timeout
        assert not closed
    finally:
        run.stop()


def test_a_partial_head_gets_408_then_the_close() -> None:
    with serving(header_timeout=0.5) as running:
        s = running.connect()
        s.sendall(b"POST /v1/rerank HTTP/1.1\r\nhost: t\r\ncontent-")
        closed, took, got = closed_by_server(s, 10)
        assert closed and status_of(got) == 408 and b"request head not received within 0.5 s" in got
        assert header(got, b"connection") == b"close"
        assert orjson.loads(got.partition(b"\r\n\r\n")[2])["error"]["code"] == 408
        assert 0.4 <= took < 3, took


def test_keep_alive_connection_stalling_in_its_next_head_is_closed() -> None:
    """uvicorn's keep-alive timer is cancelled by the first byte of the next request; ours is not."""
    with serving(header_timeout=0.5) as running:
        s = running.connect()
        s.sendall(GET)
        assert status_of(read_response(s)) == 200
        s.sendall(b"GET / HT")
        closed, took, got = closed_by_server(s, 10)
        assert closed and status_of(got) == 408
        assert took < 3, took


def test_a_keep_alive_connection_serves_many_requests_past_the_header_timeout() -> None:
    with serving(header_timeout=0.5) as running:
        s = running.connect()
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < 1.2 or n < 3:  # the head timer restarts with each request
            s.sendall(GET)
            assert status_of(read_response(s)) == 200
            n += 1
            time.sleep(0.2)


# ---------------------------------------------------------------------------------------- body timeout
def test_a_stalled_body_gets_408_and_the_app_sees_a_disconnect() -> None:
    with serving(body_timeout=0.5) as running:
        s = running.connect()
        s.sendall(
            b"POST /v1/rerank HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"
        )
        closed, took, got = closed_by_server(s, 10)
        assert closed and status_of(got) == 408, got
        assert b"request body not received within 0.5 s" in got
        body = orjson.loads(got.partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == 408 and body["id"] == header(got, b"x-request-id").decode()  # type: ignore[union-attr]
        assert 0.4 <= took < 3, took
        wait_until(lambda: running.app.disconnects == 1, 5, message="the app never saw the disconnect")


def test_a_body_that_arrives_in_parts_within_the_timeout_is_served() -> None:
    with serving(body_timeout=1.5) as running:
        s = running.connect()
        s.sendall(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n\r\nabc")
        time.sleep(0.3)  # the client is slow, not stalled
        s.sendall(b"def")
        got = read_response(s)
        assert status_of(got) == 200 and got.endswith(b"abcdef")


# ---------------------------------------------------------------------------------------- connection cap
def test_at_the_cap_a_new_connection_closes_the_longest_idle_one() -> None:
    with serving(max_connections=3, header_timeout=30) as running:
        idle = [running.connect() for _ in range(3)]
        wait_until(lambda: len(running.server.server_state.connections) == 3, 5)
        fresh = running.connect()
        fresh.sendall(GET)
        assert status_of(read_response(fresh)) == 200
        closed, _, got = closed_by_server(idle[0], 5)
        assert closed and got == b"", "the oldest idle connection was not the one closed"
        for s in idle[1:]:  # the others still work
            s.sendall(GET)
            assert status_of(read_response(s)) == 200


def test_at_the_cap_with_every_connection_busy_a_new_one_gets_503() -> None:
    with serving(max_connections=2, header_timeout=30) as running:
        busy = [running.connect() for _ in range(2)]
        for s in busy:
            s.sendall(b"GET /block HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(lambda: len(running.server.server_state.tasks) == 2, 5, message="requests not in progress")
        t0 = time.monotonic()
        refused = running.connect()
        closed, _, got = closed_by_server(refused, 5)
        assert closed and status_of(got) == 503 and header(got, b"retry-after") == b"1"
        assert b"--max-connections 2" in got
        assert time.monotonic() - t0 < 2
        running.app.release.set()
        for s in busy:
            assert status_of(read_response(s)) == 200


def test_a_client_sees_the_503_at_the_cap() -> None:
    run = start(ConnectionLimits(max_connections=1, header_timeout=30))
    try:
        busy = run.connect()
        busy.sendall(b"GET /block HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(lambda: len(run.server.server_state.tasks) == 1, 5)
        r = httpx.get(f"http://127.0.0.1:{run.port}/", timeout=5)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
    finally:
        run.app.release.set()
        run.stop()


# ---------------------------------------------------------------------------------------- drain
def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_a_request_on_an_idle_keep_alive_connection_during_the_drain_is_answered() -> None:
    """uvicorn closes idle connections the moment it stops: a request already on its way is lost."""
    with serving(drain_idle_grace=2.0, drain_timeout=5.0) as running:
        s = running.connect()
        s.sendall(GET)
        assert status_of(read_response(s)) == 200
        port = running.port
        running.server.should_exit = True
        wait_until(lambda: _refused(port), 5, 0.01, message="the listener never closed")
        s.sendall(GET)
        got = read_response(s)
        assert status_of(got) == 200 and header(got, b"connection") == b"close"
        closed, _, _ = closed_by_server(s, 5)
        assert closed
        running.thread.join(10)
        assert not running.thread.is_alive()


def test_idle_connections_are_closed_after_the_grace_and_the_drain_ends() -> None:
    with serving(drain_idle_grace=0.2, drain_timeout=5.0) as running:
        idle = [running.connect() for _ in range(5)]
        wait_until(lambda: len(running.server.server_state.connections) == 5, 5)
        t0 = time.monotonic()
        running.server.should_exit = True
        for s in idle:
            assert closed_by_server(s, 5)[0]
        running.thread.join(10)
        assert not running.thread.is_alive() and time.monotonic() - t0 < 3


def test_a_request_still_running_at_the_end_of_the_drain_gets_503() -> None:
    with serving(drain_timeout=0.5) as running:
        s = running.connect()
        s.sendall(b"GET /block HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(running.app.blocked.is_set, 5)
        t0 = time.monotonic()
        running.server.should_exit = True
        got = read_response(s, 10)
        took = time.monotonic() - t0
        assert status_of(got) == 503 and header(got, b"retry-after") == b"1", got
        assert b"did not finish within 0.5 s" in got
        assert 0.4 <= took < 3, took
        running.thread.join(10)
        assert not running.thread.is_alive()


def test_a_request_that_finishes_within_the_drain_gets_its_answer() -> None:
    with serving(drain_timeout=5.0) as running:
        s = running.connect()
        s.sendall(b"GET /block HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(running.app.blocked.is_set, 5)
        running.server.should_exit = True
        wait_until(lambda: _refused(running.port), 5, 0.01)
        running.app.release.set()
        got = read_response(s, 10)
        assert status_of(got) == 200 and header(got, b"connection") == b"close"


def test_connections_queued_while_the_loop_was_busy_are_served_not_reset() -> None:
    """The loop is stuck when SIGTERM comes; a client connects meanwhile (the kernel completes the
    handshake and queues it). uvicorn's shutdown closes the listener before it polls again: the
    queued connection would be reset. GatewayServer accepts it first and answers it."""
    with serving(drain_timeout=5.0) as running:
        port = running.port
        busy = running.connect()
        busy.sendall(b"GET /stall-loop HTTP/1.1\r\nhost: t\r\n\r\n")
        wait_until(running.app.blocked.is_set, 5)
        late = socket.create_connection(("127.0.0.1", port), timeout=10)
        late.sendall(GET)
        assert status_of(read_response(late, 10)) == 200
        assert closed_by_server(late, 5)[0]  # and then closed: the server is stopping
        assert status_of(read_response(busy, 10)) == 200
        running.thread.join(10)
        assert not running.thread.is_alive()


# ---------------------------------------------------------------------------------------- settings
def test_limits_come_from_the_settings() -> None:
    s = parse_settings(
        ["--header-timeout", "2", "--max-connections", "77"], {"RERANK_BODY_TIMEOUT": "5", "RERANK_STOP_GRACE": "9"}
    )
    limits = limits_from(s)
    assert (limits.header_timeout, limits.body_timeout, limits.max_connections) == (2.0, 5.0, 77)
    assert (limits.drain_timeout, limits.drain_idle_grace) == (9.0, 1.0)
    defaults = Settings()
    assert (defaults.header_timeout, defaults.body_timeout, defaults.max_connections) == (10.0, 30.0, None)
    assert limits_from(defaults).max_connections == default_max_connections()
    assert limits_from(Settings(stop_grace=0.0)).drain_idle_grace == 0.0


@pytest.mark.parametrize("args", [["--header-timeout", "0"], ["--body-timeout", "-1"], ["--max-connections", "0"]])
def test_limits_out_of_range_are_refused(args: list[str]) -> None:
    with pytest.raises(SettingsError, match=args[0]):
        parse_settings(args, {})


@pytest.mark.parametrize(
    ("soft", "cap"), [(1024, 768), (4096, 3072), (20000, 10000), (11000, 9976), (1_048_576, 10000), (8, 6)]
)
def test_default_cap_leaves_descriptors_for_the_rest(soft: int, cap: int) -> None:
    assert default_max_connections(soft) == cap


# ---------------------------------------------------------------------------------------- /metrics cache
class ScriptedEngine:
    """Counts the engine calls; the engine's /metrics is one gauge."""

    def __init__(self) -> None:
        self.metrics_calls = 0

    def __call__(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        assert method == "GET" and url.endswith("/metrics"), url
        self.metrics_calls += 1
        return 200, f"vllm:num_requests_running {self.metrics_calls}.0\n".encode()


def test_two_scrapes_within_the_interval_make_one_engine_call() -> None:
    engine = ScriptedEngine()
    registry = EngineRegistry(static=[snapshot()])
    with TestClient(create_app(Settings(), registry=registry, engine_transport=CallableTransport(engine))) as client:
        first = client.get("/metrics")
        second = client.get("/metrics")
    assert first.status_code == second.status_code == 200
    assert engine.metrics_calls == 1
    assert "vllm:num_requests_running 1.0" in first.text and "vllm:num_requests_running 1.0" in second.text


def test_the_engine_metrics_are_fetched_again_after_the_interval_and_once_for_concurrent_scrapes() -> None:
    now = [0.0]
    calls = 0

    async def fetch() -> list[tuple[str, str]]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return [("engine0", f"x {calls}\n")]

    async def scenario() -> None:
        cache = EngineMetricsCache(fetch, ttl=2.0, clock=lambda: now[0])
        got = await asyncio.gather(*(cache.get() for _ in range(10)))
        assert calls == 1 and all(g == [("engine0", "x 1\n")] for g in got)
        now[0] = 1.9
        assert await cache.get() == [("engine0", "x 1\n")] and calls == 1
        now[0] = 2.0
        assert await cache.get() == [("engine0", "x 2\n")] and calls == 2

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------- one write
class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, parts: Any) -> None:
        self.writes.append(b"".join(parts))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


class _Cycle:
    def __init__(self, method: str = "POST") -> None:
        self.scope = {"method": method}
        self.response_started = False


@pytest.mark.parametrize("size", [10, 200_000])
def test_a_response_head_and_body_go_out_in_one_write(size: int) -> None:
    from gateway.protocol import _OneWrite

    transport, cycle = _Transport(), _Cycle()
    one = _OneWrite(transport, cycle)  # type: ignore[arg-type]
    one.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # before the response: at once
    assert transport.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]
    cycle.response_started = True
    one.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert len(transport.writes) == 1  # held
    one.write(b"x" * size)
    assert transport.writes[1:] == [b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * size]
    one.write(b"more")  # a later part of a streamed body: at once
    assert transport.writes[-1] == b"more" and not one.is_closing()


def test_a_head_answer_and_a_head_without_a_body_still_go_out() -> None:
    from gateway.protocol import _OneWrite

    transport, cycle = _Transport(), _Cycle("HEAD")
    cycle.response_started = True
    _OneWrite(transport, cycle).write(b"HTTP/1.1 200 OK\r\n\r\n")  # type: ignore[arg-type]
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"]  # no body write follows a HEAD answer
    transport, cycle = _Transport(), _Cycle()
    one = _OneWrite(transport, cycle)  # type: ignore[arg-type]
    cycle.response_started = True
    one.write(b"HTTP/1.1 200 OK\r\n\r\n")
    one.close()  # the app stopped after its head: the head, then the close
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n"] and transport.closed


def test_answers_with_the_head_held_come_whole_on_a_keep_alive_connection() -> None:
    with serving() as running, running.connect() as s:
        for body in (b"a", b"b" * 100_000):
            s.sendall(b"POST / HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
            response = read_response(s)
            assert status_of(response) == 200 and response.endswith(b"\r\n\r\n" + body)
        s.sendall(b"HEAD / HTTP/1.1\r\nhost: t\r\n\r\n")
        s.settimeout(5)
        head = s.recv(65536)
        assert status_of(head) == 200 and head.endswith(b"\r\n\r\n")
        s.sendall(b"POST / HTTP/1.1\r\nhost: t\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
        assert s.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        s.sendall(b"ok")
        assert read_response(s).endswith(b"\r\n\r\nok")
