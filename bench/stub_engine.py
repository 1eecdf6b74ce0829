#!/usr/bin/env python3
"""An instant stand-in for a vLLM scoring engine, to measure the gateway alone.

Speaks just enough of vLLM's HTTP API: GET /health, /ping, /v1/models; POST /score and
/v1/score (`text_1` = query, `text_2` = documents → `data: [{index, object: "score", score}]`
with `usage`), and POST /rerank, /v1/rerank, /v2/rerank (vLLM's rerank answer, for LiteLLM's
`hosted_vllm` provider). Scores are a deterministic function of (query, document) content
(crc32), so a score cache in front of it gives identical answers; `usage.prompt_tokens` is a
cheap estimate (bytes/4).

It is a raw asyncio protocol (uvloop when installed) with HTTP/1.1 keep-alive and no framework,
so one process answers a 1000-document request in well under a millisecond.

    python bench/stub_engine.py --port 9100 [--delay-ms 0] [--procs 1] [--model stub] [--uds PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
import zlib

import orjson

__all__ = ["main", "serve"]

_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed"}


def _score(qcrc: int, doc: str) -> float:
    return zlib.crc32(doc.encode(), qcrc) / 4294967296.0


class _Handler:
    def __init__(self, model: str, delay_s: float) -> None:
        self.model = model
        self.delay_s = delay_s
        self.created = int(time.time())
        self.counter = 0

    def handle(self, method: bytes, path: bytes, body: bytes) -> tuple[int, bytes]:
        path = path.split(b"?", 1)[0]
        if method == b"GET":
            if path in (b"/health", b"/ping"):
                return 200, b""
            if path in (b"/v1/models", b"/models"):
                return 200, orjson.dumps(
                    {
                        "object": "list",
                        "data": [
                            {
                                "id": self.model,
                                "object": "model",
                                "created": self.created,
                                "owned_by": "stub",
                                "root": self.model,
                                "max_model_len": 512,
                            }
                        ],
                    }
                )
            return 404, b'{"error":{"message":"not found"}}'
        if method != b"POST":
            return 405, b'{"error":{"message":"method not allowed"}}'
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return 400, b'{"error":{"message":"invalid JSON"}}'
        self.counter += 1
        if path in (b"/score", b"/v1/score"):
            return self._score(req)
        if path in (b"/rerank", b"/v1/rerank", b"/v2/rerank"):
            return self._rerank(req)
        return 404, b'{"error":{"message":"not found"}}'

    def _score(self, req: dict) -> tuple[int, bytes]:
        query = req.get("text_1", req.get("queries"))
        docs = req.get("text_2", req.get("documents"))
        if isinstance(query, list):
            query = query[0] if query else ""
        if isinstance(docs, str):
            docs = [docs]
        if not isinstance(query, str) or not isinstance(docs, list):
            return 400, b'{"error":{"message":"text_1 must be a string and text_2 a list"}}'
        qcrc = zlib.crc32(query.encode())
        data = [{"index": i, "object": "score", "score": _score(qcrc, d)} for i, d in enumerate(docs)]
        tokens = (len(query) // 4 + 1) * len(docs) + sum(len(d) for d in docs) // 4
        return 200, orjson.dumps(
            {
                "id": f"score-{self.counter}",
                "object": "list",
                "created": self.created,
                "model": self.model,
                "data": data,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    def _rerank(self, req: dict) -> tuple[int, bytes]:
        query = req.get("query")
        docs = req.get("documents")
        if not isinstance(query, str) or not isinstance(docs, list):
            return 400, b'{"error":{"message":"query must be a string and documents a list"}}'
        texts = [d if isinstance(d, str) else str(d.get("text", "")) for d in docs]
        qcrc = zlib.crc32(query.encode())
        scored = sorted(((_score(qcrc, t), i) for i, t in enumerate(texts)), reverse=True)
        top_n = req.get("top_n") or len(texts)
        results = [{"index": i, "document": {"text": texts[i]}, "relevance_score": s} for s, i in scored[:top_n]]
        tokens = (len(query) // 4 + 1) * len(texts) + sum(len(t) for t in texts) // 4
        return 200, orjson.dumps(
            {
                "id": f"rerank-{self.counter}",
                "model": self.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                "results": results,
            }
        )


class _HttpProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 server side: Content-Length bodies, keep-alive, pipelining."""

    def __init__(self, handler: _Handler) -> None:
        self.handler = handler
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._drain()

    def _drain(self) -> None:
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end])
            lines = head.split(b"\r\n")
            try:
                method, path, _version = lines[0].split(b" ", 2)
            except ValueError:
                self._write(400, b"", close=True)
                return
            length = 0
            close = False
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self._write(400, b'{"error":{"message":"chunked bodies not supported"}}', close=True)
                    return
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4 : total])
            del self.buf[:total]
            status, payload = self.handler.handle(method, path, body)
            if self.handler.delay_s > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(self.handler.delay_s, self._delayed, status, payload, close)
                return
            self._write(status, payload, close=close)
            if close:
                return

    def _delayed(self, status: int, payload: bytes, close: bool) -> None:
        self.busy = False
        self._write(status, payload, close=close)
        if not close:
            self._drain()

    def _write(self, status: int, payload: bytes, *, close: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n" % (
            status,
            _REASONS.get(status, b"Error"),
            len(payload),
            b"connection: close\r\n" if close else b"",
        )
        self.transport.write(head + payload)
        if close:
            self.transport.close()


async def serve(
    host: str,
    port: int,
    *,
    model: str = "stub",
    delay_ms: float = 0.0,
    sock: socket.socket | None = None,
    uds: str | None = None,
) -> None:
    handler = _Handler(model, delay_ms / 1000.0)
    loop = asyncio.get_running_loop()
    if sock is not None:
        server = await loop.create_server(lambda: _HttpProtocol(handler), sock=sock, backlog=1024)
    else:
        server = await loop.create_server(lambda: _HttpProtocol(handler), host, port, reuse_port=True, backlog=1024)
    servers = [server]
    if uds:  # also on a Unix socket, as the service's own engines listen (its default hop)
        servers.append(await loop.create_unix_server(lambda: _HttpProtocol(handler), uds, backlog=1024))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for srv in servers:
            srv.close()
        if uds:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(uds)


def _run(host: str, port: int, model: str, delay_ms: float, uds: str | None = None) -> None:
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(host, port, model=model, delay_ms=delay_ms, uds=uds))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9100)
    p.add_argument("--model", default="stub", help="served model name reported by /v1/models and answers")
    p.add_argument("--delay-ms", type=float, default=0.0, help="simulated engine time per request")
    p.add_argument("--procs", type=int, default=1, help="server processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--uds", default=None, help="also listen on this Unix socket (one process; the gateway's hop)")
    args = p.parse_args(argv)
    if args.uds and args.procs > 1:
        p.error("--uds takes one process (--procs 1)")
    children: list[int] = []
    for _ in range(max(0, args.procs - 1)):
        pid = os.fork()
        if pid == 0:
            _run(args.host, args.port, args.model, args.delay_ms)
            os._exit(0)
        children.append(pid)
    print(f"stub engine listening on http://{args.host}:{args.port} (procs={args.procs})", file=sys.stderr, flush=True)
    try:
        _run(args.host, args.port, args.model, args.delay_ms, args.uds)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
