"""Property-based fuzzing of every route, in-process, with an instant mock engine transport:
thousands of generated bodies (near-valid and garbage), zero 5xx, always a JSON answer.

The mock engine only makes valid requests fast; nothing here asserts scores."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.settings import Settings
from tests.unit.engines import snapshot

ROUTES = ["/v1/rerank", "/v2/rerank", "/rerank", "/score", "/v1/score"]
FIELDS = [
    "model",
    "query",
    "documents",
    "texts",
    "top_n",
    "top_k",
    "return_documents",
    "rank_fields",
    "max_chunks_per_doc",
    "max_tokens_per_doc",
    "truncation",
    "truncate",
    "raw_scores",
    "return_text",
    "truncation_direction",
    "text_1",
    "text_2",
    "queries",
    "instruction",
    "priority",
    "use_activation",
]


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    docs = orjson.loads(body or b"{}").get("text_2") or []
    return 200, orjson.dumps(
        {"data": [{"index": i, "score": 0.25} for i in range(len(docs))], "usage": {"prompt_tokens": len(docs)}}
    )


@pytest.fixture(scope="module")
def client() -> TestClient:
    registry = EngineRegistry(static=[snapshot(family="bi-encoder", max_model_len=512)])
    app = create_app(Settings(max_body_bytes=200_000), registry=registry, engine_transport=CallableTransport(_engine))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False), st.text(max_size=30)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=20,
)
documents = st.one_of(
    st.lists(st.text(max_size=40), max_size=6),
    st.lists(st.dictionaries(st.sampled_from(["text", "title", "x"]), json_value, max_size=3), max_size=4),
    json_value,
)
near_valid = st.fixed_dictionaries(
    {"query": st.one_of(st.text(max_size=40), json_value)},
    optional={
        name: (documents if name in ("documents", "texts", "text_2", "queries") else json_value)
        for name in FIELDS
        if name != "query"
    },
)


def _check(resp: httpx.Response) -> None:
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    data = resp.json()
    if resp.status_code >= 400:
        assert isinstance(data, dict) and ("message" in data or "error" in data)


@settings(max_examples=2500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), body=near_valid)
def test_near_valid_bodies_never_5xx(client: TestClient, route: str, body: dict[str, Any]) -> None:
    _check(client.post(route, content=json.dumps(body)))


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(route=st.sampled_from(ROUTES), raw=st.one_of(st.binary(max_size=200), json_value.map(json.dumps)))
def test_garbage_bodies_never_5xx(client: TestClient, route: str, raw: bytes | str) -> None:
    _check(client.post(route, content=raw))


def test_deep_json_is_a_4xx(client: TestClient) -> None:
    deep = "[" * 5000 + "]" * 5000
    _check(client.post("/v1/rerank", content=deep))
    nested = '{"query": "q", "documents": [{"text": "a", "x": ' + "[" * 900 + "]" * 900 + "}]}"
    assert client.post("/v1/rerank", content=nested).status_code == 400  # past the documented 64 levels


def _nest(depth: int, leaf: object) -> object:
    value = leaf
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


NEST_SITES = [
    ("/v1/rerank", lambda v: {"query": "q", "documents": [{"text": v}]}),
    ("/v1/rerank", lambda v: {"query": "q", "documents": [{"text": "a", "meta": v}], "return_documents": True}),
    ("/v2/rerank", lambda v: {"query": "q", "documents": [{"title": v}], "rank_fields": ["title"]}),
    ("/v1/rerank", lambda v: {"query": v, "documents": ["a"], "top_k": 1}),
    ("/rerank", lambda v: {"query": "q", "texts": ["a"], "extra": v}),
    ("/score", lambda v: {"text_1": "q", "text_2": [v]}),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    site=st.sampled_from(NEST_SITES),
    depth=st.integers(0, 400),
    leaf=json_leaf.filter(lambda v: not (isinstance(v, float) and math.isinf(v))),
)
def test_nesting_at_any_depth_in_any_field_is_never_5xx(client: TestClient, site, depth: int, leaf: object) -> None:  # type: ignore[no-untyped-def]
    route, body = site
    r = client.post(route, json=body(_nest(depth, leaf)))
    _check(r)
    if depth > 64:
        assert r.status_code == 400, (route, depth, r.text)


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/rerank", content=b'{"query": "q", "documents": ["' + b"a" * 300_000 + b'"]}')
    assert r.status_code == 413 and "too large" in r.json()["message"]
