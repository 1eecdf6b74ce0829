"""Hardening of the request path: no body nests deep enough to crash a route, /score obeys the rerank
routes' limits (documents counted in pairs, one deadline and one admission ticket per HTTP request),
and only well-formed client request ids are echoed and logged."""

from __future__ import annotations

import asyncio
import http.client
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from compat.documents import document_texts
from compat.errors import CompatError
from engine import EngineRegistry
from engine.transport import CallableTransport, ReadTimeout
from gateway.app import create_app
from gateway.middleware import MAX_JSON_DEPTH, parse_body
from gateway.settings import Settings
from tests.support.inprocess import serve_app
from tests.unit.engines import snapshot


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    docs = orjson.loads(body or b"{}").get("text_2") or []
    return 200, orjson.dumps(
        {"data": [{"index": i, "score": 0.5} for i in range(len(docs))], "usage": {"prompt_tokens": len(docs)}}
    )


@contextmanager
def _client(transport: Any = None, **settings: Any) -> Iterator[TestClient]:
    app = create_app(
        Settings(**settings),
        registry=EngineRegistry(static=[snapshot()]),
        engine_transport=transport or CallableTransport(_engine),
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with _client() as c:
        yield c


def _nested(depth: int, leaf: Any = "x") -> Any:
    """`depth` lists, one inside the other, around `leaf` (built without recursion)."""
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def _dumps(body: Any) -> bytes:
    # the stdlib's encoder recurses (and orjson refuses > 255 levels): write deep bodies by hand
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], list):
        depth, value = 0, body
        while isinstance(value, list) and len(value) == 1:
            depth, value = depth + 1, value[0]
        return b"[" * depth + orjson.dumps(value) + b"]" * depth
    if isinstance(body, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + _dumps(v) for k, v in body.items()) + b"}"
    if isinstance(body, list):
        return b"[" + b",".join(_dumps(v) for v in body) + b"]"
    return orjson.dumps(body)


def _post(client: TestClient, path: str, body: Any, **headers: str) -> Any:
    return client.post(path, content=_dumps(body), headers={"content-type": "application/json", **headers})


def _shape(body: dict[str, Any]) -> str:
    return "tei" if isinstance(body.get("error"), str) else "superset"


# ---------------------------------------------------------------------------------------- nesting
DEEP = 1000

DEEP_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/rerank", {"query": "q", "documents": [{"text": _nested(DEEP)}]}, "superset"),
    (
        "/v2/rerank",
        {"query": "q", "documents": [{"title": _nested(DEEP), "x": "y"}], "rank_fields": ["title"]},
        "superset",
    ),
    (
        "/v1/rerank",
        {"query": "q", "documents": [{"text": "a", "meta": _nested(260)}], "return_documents": True},
        "superset",
    ),
    ("/v1/rerank", {"query": "q", "documents": [{"text": _nested(DEEP)}], "top_k": None}, "superset"),  # Voyage
    ("/rerank", {"query": "q", "texts": ["a"], "extra": _nested(DEEP)}, "tei"),
    ("/score", {"text_1": "q", "text_2": _nested(DEEP)}, "superset"),
    ("/v1/score", {"queries": "q", "documents": ["a"], "extra": {"k": _nested(100)}}, "superset"),
]


@pytest.mark.parametrize(("path", "body", "shape"), DEEP_BODIES)
def test_a_deeply_nested_body_is_400_in_the_callers_dialect(
    client: TestClient, path: str, body: dict[str, Any], shape: str
) -> None:
    r = _post(client, path, body)
    assert r.status_code == 400, r.text
    data = r.json()
    assert _shape(data) == shape
    assert f"nested deeper than {MAX_JSON_DEPTH} levels" in data["message"]
    if shape == "superset":
        assert data["error"]["param"] == "body"


def test_the_keep_alive_connection_survives_a_deep_body() -> None:
    """A real server, one HTTP/1.1 connection: the 400 is an answer, not a broken connection."""
    app = create_app(
        Settings(), registry=EngineRegistry(static=[snapshot()]), engine_transport=CallableTransport(_engine)
    )
    with serve_app(app) as base:
        conn = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
        deep = _dumps({"query": "q", "documents": [{"text": _nested(DEEP)}]})
        ok = orjson.dumps({"query": "q", "documents": ["a", "b"]})
        for body, status in ((deep, 400), (ok, 200), (deep, 400), (ok, 200)):
            conn.request("POST", "/v1/rerank", body=body, headers={"content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == status
            assert resp.getheader("connection") != "close"
        conn.close()


def test_a_60_deep_document_is_still_accepted(client: TestClient) -> None:
    """Objects are scored by their `text` as JSON (compat.documents); 60 levels of it are fine, and
    returned as sent."""
    doc = {"text": _nested(60), "meta": _nested(55, {"k": "v"})}
    r = _post(client, "/v1/rerank", {"query": "q", "documents": [doc, "b"], "return_documents": True})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["document"] in (doc, {"text": "b"})
    r = _post(
        client, "/v2/rerank", {"query": "q", "documents": [{"title": _nested(60), "x": 1}], "rank_fields": ["title"]}
    )
    assert r.status_code == 200, r.text


def test_parse_body_counts_containers_up_to_the_limit() -> None:
    at_limit = {"a": _nested(MAX_JSON_DEPTH - 1)}  # the object itself is level 1
    assert parse_body(_dumps(at_limit)) == at_limit
    with pytest.raises(CompatError) as exc:
        parse_body(_dumps({"a": _nested(MAX_JSON_DEPTH)}))
    assert exc.value.status == 400 and exc.value.param == "body"
    assert exc.value.message == f"invalid request: the body is nested deeper than {MAX_JSON_DEPTH} levels"
    objects: Any = "x"
    for _ in range(MAX_JSON_DEPTH):
        objects = {"k": objects}
    with pytest.raises(CompatError):
        parse_body(orjson.dumps({"a": objects}))
    wide = {"documents": [{"text": str(i), "m": [[1], {"a": [2]}]} for i in range(5000)]}
    assert parse_body(orjson.dumps(wide)) == wide


def test_document_texts_refuses_values_too_deep_to_serialise() -> None:
    """compat.documents on its own (without the gateway's depth limit) answers 400, not RecursionError."""
    with pytest.raises(CompatError) as exc:
        document_texts([{"text": _nested(100_000)}])
    assert exc.value.status == 400 and exc.value.param == "documents[0]"
    with pytest.raises(CompatError):
        document_texts([{"t": _nested(100_000)}], rank_fields=["t"])


# ---------------------------------------------------------------------------------------- /score limits
def test_score_counts_max_documents_in_pairs() -> None:
    with _client(max_documents=5) as c:
        n_n = c.post("/score", json={"text_1": [f"q{i}" for i in range(6)], "text_2": [f"d{i}" for i in range(6)]})
        assert n_n.status_code == 400, n_n.text
        assert "6 > 5" in n_n.json()["error"]["message"] and n_n.json()["error"]["code"] == 400
        one_n = c.post("/v1/score", json={"queries": "q", "documents": [f"d{i}" for i in range(6)]})
        assert one_n.status_code == 400
        assert c.post("/score", json={"text_1": ["a", "b"] * 2 + ["c"], "text_2": list("vwxyz")}).status_code == 200
        assert c.post("/v1/rerank", json={"query": "q", "documents": list("abcdef")}).status_code == 400


class _SlowEngine:
    """Answers after `delay` seconds, honouring the deadline's timeout as the real transport does."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.active = 0
        self.calls = 0

    async def post(self, url: str, body: bytes, *, timeout: float, connect_timeout: float) -> tuple[int, bytes]:
        self.active += 1
        self.calls += 1
        try:
            await asyncio.wait_for(asyncio.sleep(self.delay), timeout)
        except TimeoutError:
            raise ReadTimeout("no answer in time") from None
        finally:
            self.active -= 1
        return _engine("POST", url, body)

    async def get(self, url: str, *, timeout: float) -> tuple[int, bytes]:
        return 404, b""

    async def aclose(self) -> None:
        return None


def test_score_has_one_deadline_for_the_whole_request() -> None:
    """40 query groups, 8 at a time, 0.3 s each: 1.5 s of work against a 1 s request timeout. Each
    group fits the timeout alone; the request as a whole does not, so it is 504 at about 1 s."""
    engine = _SlowEngine(0.3)
    with _client(engine, request_timeout=1.0) as c:
        body = {"text_1": [f"q{i}" for i in range(40)], "text_2": [f"d{i}" for i in range(40)]}
        t0 = time.monotonic()
        r = c.post("/score", json=body)
        elapsed = time.monotonic() - t0
        assert r.status_code == 504, r.text
        assert elapsed < 1.0 + 0.4, elapsed
        assert engine.active == 0  # the groups still waiting were cancelled, not left running
        assert engine.calls < 40
        fast = c.post("/score", json={"text_1": ["a", "b"], "text_2": ["x", "y"]})
        assert fast.status_code == 200


def test_score_takes_one_admission_ticket_of_all_its_pairs(caplog: pytest.LogCaptureFixture) -> None:
    """3 query groups, 7 pairs: one ticket of 7, held while every group is scored; the request log
    counts all 7 documents and all their tokens."""
    seen: list[tuple[int, int]] = []
    holder: dict[str, Any] = {}

    def engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        seen.append((holder["admission"].inflight, len(orjson.loads(body or b"{}")["text_2"])))
        return _engine(method, url, body)

    with _client(CallableTransport(engine)) as c:
        admission = c.app.state.runtime.pipeline.admission  # type: ignore[attr-defined]
        holder["admission"] = admission
        tickets: list[int] = []
        admit: Callable[[int], Any] = admission.admit

        def spy(pairs: int) -> Any:
            tickets.append(pairs)
            return admit(pairs)

        admission.admit = spy
        with caplog.at_level(logging.INFO, logger="vllm_rerank.access"):
            r = c.post("/score", json={"text_1": ["a", "a", "b", "b", "c", "c", "c"], "text_2": list("1234567")})
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] == 7
        (line,) = [rec.getMessage() for rec in caplog.records if "path=/score" in rec.getMessage()]
        assert " documents=7 tokens=7 " in line
        assert [d["index"] for d in r.json()["data"]] == list(range(7))
        assert tickets == [7]
        assert sorted(n for _, n in seen) == [2, 2, 3] and all(inflight == 7 for inflight, _ in seen)
        assert admission.inflight == 0


def test_score_is_refused_when_its_total_does_not_fit_beside_another_request() -> None:
    """Limit 14, 6 pairs in flight: a /score of 10 one-pair groups is 429 at once (the total does not
    fit, though every group, and every 8 of them scored at once, would); one of 8 pairs fits."""
    release = asyncio.Event()
    started = threading.Event()

    async def engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        if orjson.loads(body or b"{}")["text_1"] == "hold":
            started.set()
            await release.wait()
        return _engine(method, url, body)

    with _client(CallableTransport(engine)) as c:
        pipeline = c.app.state.runtime.pipeline  # type: ignore[attr-defined]
        pipeline.admission.limit = 14
        held: dict[str, Any] = {}
        first = threading.Thread(
            target=lambda: held.update(r=c.post("/v1/rerank", json={"query": "hold", "documents": list("abcdef")}))
        )
        first.start()
        assert started.wait(5)
        try:
            r = c.post("/score", json={"text_1": [f"q{i}" for i in range(10)], "text_2": list("0123456789")})
            assert r.status_code == 429, r.text
            assert r.headers["retry-after"]
            small = c.post("/score", json={"text_1": [f"q{i}" for i in range(8)], "text_2": list("01234567")})
            assert small.status_code == 200, small.text
        finally:
            c.portal.call(release.set)  # type: ignore[union-attr]
            first.join(5)
        assert held["r"].status_code == 200


# ---------------------------------------------------------------------------------------- request ids
@pytest.mark.parametrize("rid", ["abc", "req-1.2_3:4", "A" * 128, "0c1f7e2a9b5d4e6f8a7b6c5d4e3f2a1b"])
def test_a_well_formed_request_id_is_echoed(client: TestClient, rid: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vllm_rerank.access"):
        r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"x-request-id": rid})
    assert r.status_code == 200 and r.headers["x-request-id"] == rid and r.json()["id"] == rid
    assert any(f"request_id={rid} " in rec.getMessage() for rec in caplog.records)


@pytest.mark.parametrize(
    "rid", ["a b status=200 injected=1", "A" * 129, "x" * 8000, "a\tb", "ünïcode", "a/b", 'a"b', "id;drop", " "]
)
def test_a_malformed_request_id_is_replaced(client: TestClient, rid: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vllm_rerank.access"):
        r = client.post(
            "/v1/rerank",
            json={"query": "q", "documents": ["a"]},
            headers={b"x-request-id": rid.encode()},
        )
        bad = client.post("/v2/rerank", json={"query": ""}, headers={b"x-request-id": rid.encode()})
    for resp in (r, bad):
        echoed = resp.headers["x-request-id"]
        assert echoed != rid and len(echoed) == 32 and int(echoed, 16) >= 0
        assert resp.json()["id"] == echoed
    assert r.status_code == 200 and bad.status_code in (400, 422)
    lines = [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("request_completed")]
    assert lines and not any("injected" in line or "x" * 200 in line for line in lines)
    assert all(line.split()[1] == f"request_id={r.headers['x-request-id']}" for line in lines[:1])
