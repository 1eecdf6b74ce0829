"""A real HTTP server for an in-process app, in a thread: for clients that need a socket (a browser,
an exporter), where the ASGI test client is not enough."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

import uvicorn

from tests.support.wait import wait_until

__all__ = ["serve_app"]


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve `app` on a free loopback port (lifespan on) while the block runs; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 30, 0.02, message="the in-process server never started")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
