"""HttpTransport (the engine hop) against a scripted raw HTTP server on loopback and on a Unix socket:
what goes on the wire, how each framing of an answer is read, which failures map to which error,
and when a connection is reused."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from engine.transport import CALL_HEADERS, ConnectFailed, ConnectionLost, HttpTransport, ReadTimeout, unix_url

# What the server does with one request: (its raw head + body) -> bytes to write, or None to write
# nothing; `close` after writing.
Reply = Callable[[bytes], tuple[bytes | None, bool]]


def _plain(body: bytes, *, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


class Server:
    """Counts connections, records requests, answers each with `reply`."""

    def __init__(self, reply: Reply) -> None:
        self.reply = reply
        self.connections = 0
        self.requests: list[bytes] = []
        self.got_request = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                raw = head + await reader.readexactly(length)
                self.requests.append(raw)
                self.got_request.set()
                out, close = self.reply(raw)
                if out is not None:
                    writer.write(out)
                    await writer.drain()
                if close:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def _run(reply: Reply, body: Callable[[str, Server], Awaitable[None]], *, unix: bool = False) -> Server:
    server = Server(reply)

    async def main() -> None:
        if unix:
            with tempfile.TemporaryDirectory() as tmp:
                path = str(Path(tmp) / "engine.sock")
                srv = await asyncio.start_unix_server(server.handle, path)
                async with srv:
                    await body(unix_url(path), server)
        else:
            srv = await asyncio.start_server(server.handle, "127.0.0.1", 0)
            async with srv:
                port = srv.sockets[0].getsockname()[1]
                await body(f"http://127.0.0.1:{port}", server)

    asyncio.run(main())
    return server


def test_requests_on_the_wire_and_keep_alive_reuse() -> None:
    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        assert await t.post(f"{url}/score", b'{"a":1}', timeout=5, connect_timeout=1) == (200, b'{"ok":1}')
        assert await t.post(f"{url}/score", b'{"a":2}', timeout=5, connect_timeout=1) == (200, b'{"ok":1}')
        assert await t.get(f"{url}/metrics", timeout=5) == (200, b'{"ok":1}')
        await t.aclose()

    server = _run(lambda raw: (_plain(b'{"ok":1}'), False), body)
    assert server.connections == 1  # one keep-alive connection for all three
    first = server.requests[0]
    assert first.startswith(b"POST /score HTTP/1.1\r\n")
    assert b"\r\nhost: 127.0.0.1:" in first
    assert b"\r\ncontent-type: application/json\r\ncontent-length: 7\r\n\r\n" in first
    assert first.endswith(b'{"a":1}')
    assert server.requests[2].startswith(b"GET /metrics HTTP/1.1\r\n")


def test_chunked_and_until_close_answers_are_read_whole() -> None:
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    until_close = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\r\nbusy!"
    replies = iter([(chunked, False), (until_close, True), (_plain(b"x"), False)])

    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"abcde")
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (503, b"busy!")
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"x")
        await t.aclose()

    server = _run(lambda raw: next(replies), body)
    assert server.connections == 2  # the until-close answer ended its connection


def test_unix_socket() -> None:
    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"u")
        await t.aclose()

    server = _run(lambda raw: (_plain(b"u"), False), body, unix=True)
    assert server.requests[0].startswith(b"POST /score HTTP/1.1\r\nhost: localhost\r\n")


def test_no_answer_is_a_read_timeout_and_the_connection_is_not_reused() -> None:
    answers = iter([(None, False), (_plain(b"late"), False)])

    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        with pytest.raises(ReadTimeout):
            await t.post(f"{url}/score", b"{}", timeout=0.2, connect_timeout=1)
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"late")
        await t.aclose()

    server = _run(lambda raw: next(answers), body)
    assert server.connections == 2


def test_a_close_before_the_answer_is_connection_lost() -> None:
    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        with pytest.raises(ConnectionLost):
            await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1)
        await t.aclose()

    _run(lambda raw: (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", True), body)


def test_a_refused_connection_is_connect_failed() -> None:
    async def main() -> None:
        srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        srv.close()
        await srv.wait_closed()
        t = HttpTransport()
        with pytest.raises(ConnectFailed):
            await t.post(f"http://127.0.0.1:{port}/score", b"{}", timeout=5, connect_timeout=1)
        with pytest.raises(ConnectFailed):
            await t.post(unix_url("/nonexistent/engine.sock") + "/score", b"{}", timeout=5, connect_timeout=1)
        await t.aclose()

    asyncio.run(main())


def test_idle_connections_expire() -> None:
    async def body(url: str, server: Server) -> None:
        t = HttpTransport(keepalive_s=0.0)
        for _ in range(3):
            assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"k")
        await t.aclose()

    server = _run(lambda raw: (_plain(b"k"), False), body)
    assert server.connections == 3


async def _cancel(task: asyncio.Future[tuple[int, bytes]]) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_cancelled_request_closes_its_connection() -> None:
    answers = iter([(None, False), (_plain(b"next"), False)])

    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        task = asyncio.ensure_future(t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1))
        await server.got_request.wait()
        await _cancel(task)
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"next")
        await t.aclose()

    server = _run(lambda raw: next(answers), body)
    assert server.connections == 2


def test_call_headers_of_the_context_go_on_the_wire() -> None:
    """The gateway sets CALL_HEADERS (a W3C traceparent) around an engine call; a header that would
    break the request head is left out."""

    async def body(url: str, server: Server) -> None:
        t = HttpTransport()
        token = CALL_HEADERS.set({"traceparent": "00-abc-def-01", "x-bad": "a\r\nx-injected: 1"})
        try:
            assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"h")
        finally:
            CALL_HEADERS.reset(token)
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"h")
        await t.aclose()

    server = _run(lambda raw: (_plain(b"h"), False), body)
    assert b"\r\ntraceparent: 00-abc-def-01\r\n" in server.requests[0]
    assert b"x-injected" not in server.requests[0] and b"x-bad" not in server.requests[0]
    assert b"traceparent" not in server.requests[1]


def test_an_https_engine_is_spoken_to_over_tls() -> None:
    """--engine-url https://...: the connection starts with a TLS handshake (a ClientHello, record type
    0x16), never a plain-text request on the TLS port; a failed handshake is ConnectFailed."""
    first: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first.append(await reader.read(5))
        writer.close()

    async def main() -> None:
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with srv:
            port = srv.sockets[0].getsockname()[1]
            t = HttpTransport()
            with pytest.raises(ConnectFailed):
                await t.post(f"https://127.0.0.1:{port}/score", b"{}", timeout=5, connect_timeout=2)
            await t.aclose()

    asyncio.run(main())
    assert first and first[0][:1] == b"\x16", first


def test_an_ipv6_engine_gets_a_bracketed_host_header() -> None:
    import socket

    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    server = Server(lambda raw: (_plain(b"{}"), False))

    async def main() -> None:
        try:
            srv = await asyncio.start_server(server.handle, "::1", 0)
        except OSError:
            pytest.skip("no IPv6 loopback")
        async with srv:
            port = srv.sockets[0].getsockname()[1]
            t = HttpTransport()
            assert await t.post(f"http://[::1]:{port}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"{}")
            await t.aclose()
            assert f"\r\nhost: [::1]:{port}\r\n".encode() in server.requests[0]

    asyncio.run(main())


def test_the_wait_for_a_free_connection_counts_against_the_timeout() -> None:
    """With every connection busy, a request waits for one only as long as its own timeout, then is a
    ReadTimeout with nothing sent (the engine never sees it); the slot it waited for is not lost."""
    answers = iter([(None, False), (_plain(b"next"), False), (_plain(b"next"), False)])

    async def body(url: str, server: Server) -> None:
        t = HttpTransport(max_connections=1)
        hung = asyncio.ensure_future(t.post(f"{url}/score", b"{}", timeout=30, connect_timeout=1))
        await server.got_request.wait()  # the one connection is taken, its answer never comes
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(ReadTimeout, match=r"no connection to .* free in time"):
            await t.post(f"{url}/score", b"{}", timeout=0.3, connect_timeout=1)
        assert loop.time() - start < 5  # not until the hung request's 30 s
        assert len(server.requests) == 1
        await _cancel(hung)
        assert await t.post(f"{url}/score", b"{}", timeout=5, connect_timeout=1) == (200, b"next")
        await t.aclose()

    server = _run(lambda raw: next(answers), body)
    assert len(server.requests) == 2
