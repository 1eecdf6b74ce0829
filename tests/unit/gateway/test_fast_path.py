"""The middleware's fast path (gateway/middleware.py): the rerank and score paths answered without
FastAPI's routing give the bytes, status and headers the FastAPI routes give, in every dialect and
for errors; a client that goes away cancels the work; everything else still reaches FastAPI."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

import compat.infinity
import compat.score
from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.metrics import METRICS, TIMING_HEADERS
from gateway.middleware import GatewayMiddleware
from gateway.settings import Settings
from tests.unit.engines import snapshot

RID = "fast-path-1"
KEY = {"Authorization": "Bearer k", "X-Request-Id": RID}


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    data = orjson.loads(body or b"{}")
    if data.get("text_1") == "engine says no":
        return 400, orjson.dumps({"error": {"message": "the engine refused it", "type": "BadRequestError"}})
    docs = data.get("text_2") or []
    scores = [0.25 + 0.5 * (i % 3) / 3 for i in range(len(docs))]
    return 200, orjson.dumps({"data": [{"index": i, "score": s} for i, s in enumerate(scores)], "usage": {}})


def _app(*, fast: bool, **settings: Any) -> FastAPI:
    app = create_app(
        Settings(api_keys=("k",), **settings),
        registry=EngineRegistry(static=[snapshot()]),
        engine_transport=CallableTransport(_engine),
    )
    if not fast:  # the same app, every path through FastAPI's routes
        for m in app.user_middleware:
            if m.cls is GatewayMiddleware:
                m.kwargs["answers"] = {}
    return app


@pytest.fixture(scope="module")
def clients() -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(_app(fast=True)) as fast, TestClient(_app(fast=False)) as routed:
        yield fast, routed


DOCS = ["Paris is in France.", "Berlin is in Germany.", "Rome is in Italy."]
CASES: list[tuple[str, dict[str, Any], dict[str, str], int]] = [
    ("/v1/rerank", {"query": "q", "documents": DOCS, "top_n": 2, "return_documents": True}, {}, 200),
    ("/v1/rerank", {"query": "q", "documents": DOCS, "top_k": 2}, {}, 200),  # Voyage
    ("/v2/rerank", {"model": "m", "query": "q", "documents": DOCS}, {}, 200),
    ("/rerank", {"query": "q", "texts": DOCS, "return_text": True}, {}, 200),  # TEI
    ("/rerank", {"query": "q", "documents": DOCS}, {"X-Pinecone-API-Version": "2025-04"}, 200),
    ("/rerank", {"query": "q", "documents": DOCS}, {}, 200),  # the Cohere v1 / Jina superset
    ("/score", {"text_1": "q", "text_2": DOCS}, {}, 200),
    ("/v1/score", {"text_1": ["q", "r"], "text_2": DOCS[:2]}, {}, 200),
    ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": d} for d in DOCS]}, {}, 200),
    ("/v1/reranking", {"query": "q", "input": DOCS, "top_k": 1}, {}, 200),
    ("/infinity/rerank", {"query": "q", "documents": DOCS}, {}, 200),
    # errors raised below the route, each in its path's dialect
    ("/v2/rerank", {"query": {"not": "text"}, "documents": DOCS}, {}, 422),
    ("/rerank", {"query": "q", "texts": "not a list"}, {}, 422),  # TEI's envelope
    ("/rerank", {"query": 1, "documents": DOCS}, {"X-Pinecone-API-Version": "2025-04"}, 422),
    ("/v1/rerank", {"query": "q", "documents": DOCS, "top_n": 0}, {}, 400),
    ("/v2/rerank", {"query": "engine says no", "documents": DOCS}, {}, 400),  # the engine's own 400
    ("/score", {"text_1": "q", "text_2": []}, {}, 400),
]


def _slow_app(engine: Any) -> FastAPI:
    registry = EngineRegistry(static=[snapshot()])
    return create_app(Settings(api_keys=("k",)), registry=registry, engine_transport=CallableTransport(engine))


def _comparable(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The headers, the timing values (whole milliseconds of this run) left out."""
    timing = {h.encode() for h in TIMING_HEADERS}
    return [(k, b"" if k in timing else v) for k, v in headers]


@pytest.mark.parametrize(("path", "body", "headers", "status"), CASES)
def test_the_fast_path_answers_the_bytes_the_route_answers(
    clients: tuple[TestClient, TestClient],
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    status: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the vLLM and Infinity answers carry "created" (whole seconds): one clock for both calls, or the two
    # answers differ whenever a second ends between them (seen in a fresh-clone run)
    for module in (compat.score, compat.infinity):
        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=lambda: 1_796_688_645.0))
    fast, routed = clients
    a = fast.post(path, json=body, headers={**KEY, **headers})
    b = routed.post(path, json=body, headers={**KEY, **headers})
    assert a.status_code == b.status_code == status, (a.text, b.text)
    assert a.content == b.content
    assert _comparable(a.headers.raw) == _comparable(b.headers.raw)
    assert a.headers["x-request-id"] == RID and all(h in a.headers for h in TIMING_HEADERS)


def test_the_fast_path_and_the_route_share_one_answer_per_path() -> None:
    from gateway.routes import rerank, vendors

    app = _app(fast=True)
    fast_paths = {**rerank.ANSWERS, **vendors.ANSWERS}
    posted = {r.path for r in app.routes if "POST" in getattr(r, "methods", ())}  # type: ignore[attr-defined]
    assert set(fast_paths) == posted  # every POST route is answered by the middleware, and nothing else is


def test_other_paths_and_methods_still_reach_fastapi(clients: tuple[TestClient, TestClient]) -> None:
    fast, _ = clients
    assert fast.get("/health").status_code == 200
    assert fast.get("/v1/models", headers=KEY).json()["object"] == "list"
    assert fast.get("/openapi.json").json()["paths"]["/v2/rerank"]["post"]["operationId"] == "rerank_v2"
    assert fast.get("/v2/rerank", headers=KEY).status_code == 405  # not a POST: FastAPI's answer
    assert fast.post("/v2/rerank", json={"query": "q", "documents": DOCS}).status_code == 401  # no key


def test_an_unexpected_error_is_a_500_in_the_dialect_with_the_request_id(caplog: pytest.LogCaptureFixture) -> None:
    app = _app(fast=True)

    async def broken(rt: Any, state: dict[str, Any]) -> bytes:
        raise RuntimeError("secret detail")

    with TestClient(app) as client:  # the lifespan has built the middleware stack: patch its table
        middleware = _gateway_middleware(app)
        middleware.answers = {**middleware.answers, "/rerank": broken}
        r = client.post("/rerank", json={"query": "q", "texts": DOCS}, headers=KEY)
    assert r.status_code == 500
    assert r.headers["x-request-id"] == RID
    body = r.json()
    assert isinstance(body["error"], str) and "secret" not in r.text and RID in body["error"]  # TEI's envelope
    assert "unhandled_error" in caplog.text


def _gateway_middleware(app: FastAPI) -> GatewayMiddleware:
    layer: Any = app.middleware_stack
    while not isinstance(layer, GatewayMiddleware):
        layer = layer.app
    return layer


async def _asgi_post(app: FastAPI, path: str, body: dict[str, Any], gone: asyncio.Event) -> list[dict[str, Any]]:
    """One POST straight through ASGI; the client goes away when `gone` is set. Returns what was sent."""
    raw = orjson.dumps(body)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"authorization", b"Bearer k")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
        "app": app,
    }
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": raw, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await _gateway_middleware(app)(scope, receive, send)
    return sent


def test_a_client_that_goes_away_cancels_the_engine_call() -> None:
    started = asyncio.Event()
    cancelled: list[bool] = []

    async def slow(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        raise AssertionError("not cancelled")

    app = _slow_app(slow)

    async def main() -> tuple[list[dict[str, Any]], float, int]:
        async with app.router.lifespan_context(app):
            app.middleware_stack = app.build_middleware_stack()
            gone = asyncio.Event()
            before = METRICS.disconnects._value.get()
            request = asyncio.ensure_future(_asgi_post(app, "/v2/rerank", {"query": "q", "documents": DOCS}, gone))
            await asyncio.wait_for(started.wait(), 5)
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            gone.set()
            sent = await asyncio.wait_for(request, 5)
            pairs = app.state.runtime.pipeline.admission.inflight
            assert METRICS.disconnects._value.get() == before + 1
            return sent, loop.time() - t0, pairs

    sent, took, pairs = asyncio.run(main())
    assert sent == []  # nothing is answered to a client that is gone
    assert cancelled == [True] and took < 2
    assert pairs == 0  # the admission ticket was given back


def test_a_request_cancelled_by_the_server_is_not_taken_for_a_disconnect() -> None:
    """A cancel that is not the client's (uvicorn's shutdown) goes on up, not swallowed as a 499."""

    async def slow(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        await asyncio.sleep(30)
        raise AssertionError("not cancelled")

    app = _slow_app(slow)

    async def main() -> None:
        async with app.router.lifespan_context(app):
            app.middleware_stack = app.build_middleware_stack()
            request = asyncio.ensure_future(
                _asgi_post(app, "/v2/rerank", {"query": "q", "documents": DOCS}, asyncio.Event())
            )
            await asyncio.sleep(0.05)
            request.cancel()
            with pytest.raises(asyncio.CancelledError):
                await request

    asyncio.run(main())
