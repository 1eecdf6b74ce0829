"""A lean closed-loop HTTP/1.1 load generator (asyncio streams, pre-serialised bodies).

The benchmark shares a 2-core machine with the engine and the gateway, so the client must cost
as little CPU as possible: no HTTP library, one keep-alive connection per concurrent worker,
request bytes built by splicing a per-request query into a pre-serialised documents fragment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HttpConn", "RunResult", "Target", "run_closed_loop"]


@dataclass
class Target:
    """Where and how to send: `make_body(i)` returns the JSON body of request number i."""

    url: str  # full URL of the endpoint
    make_body: Callable[[int], bytes]
    headers: dict[str, str] = field(default_factory=dict)
    docs_per_request: int = 1


@dataclass
class RunResult:
    latencies: list[float]  # seconds, requests completed inside the window
    window_s: float
    errors: int
    first_error: str | None
    docs_per_request: int

    @property
    def requests(self) -> int:
        return len(self.latencies)

    concurrency: int = 1

    @property
    def rps_count(self) -> float:
        """Completions inside the window / window length (quantised when requests are slow)."""
        return self.requests / self.window_s if self.window_s > 0 else 0.0

    @property
    def rps(self) -> float:
        """Closed-loop throughput by Little's law: concurrency / mean latency.

        Exact in steady state for a closed loop without think time, and not quantised by the
        window when each request takes a good part of it (a real CPU engine: ~0.5 s per request).
        """
        if not self.latencies:
            return 0.0
        return self.concurrency / (sum(self.latencies) / len(self.latencies))

    @property
    def pairs_per_s(self) -> float:
        return self.rps * self.docs_per_request

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        xs = sorted(self.latencies)
        k = min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))
        return xs[k]


class HttpConn:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 24)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass
        self.reader = self.writer = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = -1
        chunked = False
        close = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if chunked:
            parts = []
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readexactly(2)
            body = b"".join(parts)
        elif length >= 0:
            body = await self.reader.readexactly(length)
        else:
            body = await self.reader.read()
            close = True
        if close:
            await self.close()
        return status, body


def build_request(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    path = parts.path or "/"
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


async def run_closed_loop(
    target: Target,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 0.5,
    timeout_s: float = 300.0,
    on_window: Callable[[str], None] | None = None,
    max_requests: int | None = None,
) -> RunResult:
    """`concurrency` workers, each sending its next request as soon as the last one answered.

    Requests that *complete* inside [start+warmup, start+warmup+duration] count. `on_window` is
    called with "start" and "end" at the window's edges (CPU sampling). Workers finish their
    in-flight request after the window so connections stay clean.
    """
    parts = urlsplit(target.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    w_start = t0 + warmup_s
    w_end = w_start + duration_s
    latencies: list[float] = []
    errors = 0
    first_error: list[str] = []
    counter = 0
    state = {"started": False}

    def mark_start() -> None:
        state["started"] = True
        if on_window:
            on_window("start")

    def mark_end() -> None:
        if on_window:
            on_window("end")

    loop.call_at(w_start, mark_start)
    end_handle = loop.call_at(w_end, mark_end)

    async def worker() -> None:
        nonlocal counter, errors
        conn = HttpConn(host, port)
        try:
            while loop.time() < w_end:
                if max_requests is not None and counter >= max_requests:
                    break
                i = counter
                counter += 1
                raw = build_request(target.url, target.make_body(i), target.headers)
                s = time.perf_counter()
                try:
                    status, body = await asyncio.wait_for(conn.request(raw), timeout_s)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors += 1
                    if not first_error:
                        first_error.append(f"{type(exc).__name__}: {exc}")
                    await conn.close()
                    continue
                lat = time.perf_counter() - s
                now = loop.time()
                if status != 200:
                    errors += 1
                    if not first_error:
                        first_error.append(f"HTTP {status}: {body[:300]!r}")
                    continue
                if w_start <= now <= w_end:
                    latencies.append(lat)
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    now = loop.time()
    if now < w_end:  # stopped early (max_requests): close the window now
        end_handle.cancel()
        mark_end()
        window = max(1e-9, now - w_start)
    else:
        window = duration_s
    return RunResult(
        latencies=latencies,
        window_s=window,
        errors=errors,
        first_error=first_error[0] if first_error else None,
        docs_per_request=target.docs_per_request,
        concurrency=concurrency,
    )
