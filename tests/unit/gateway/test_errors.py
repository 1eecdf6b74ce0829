"""The error table (one status per error kind) and the dialect, decided once per request."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import BaseModel, ValidationError
from starlette.testclient import TestClient

from compat.errors import CompatError, UnknownModelError
from core import OverloadedError
from engine import (
    EngineError,
    EngineOverloadedError,
    EngineProtocolError,
    EngineRegistry,
    EngineRejectedError,
    EngineTimeoutError,
    EngineUnavailableError,
)
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.errors import BodyTooLargeError, UnauthorizedError, render_error
from gateway.settings import Settings
from tests.unit.engines import snapshot


class _Wire(BaseModel):
    n: int


def _validation_error() -> ValidationError:
    try:
        _Wire.model_validate({"n": "x"})
    except ValidationError as exc:
        return exc
    raise AssertionError("unreachable")


CASES: list[tuple[BaseException, int, str | None]] = [
    (CompatError("bad"), 400, None),
    (CompatError("too long", status=413), 413, None),
    (UnknownModelError("x", ["m"]), 404, None),
    (_validation_error(), 422, None),
    (UnauthorizedError("no api key supplied"), 401, None),
    (BodyTooLargeError("big"), 413, None),
    (OverloadedError("busy", retry_after=0.2), 429, "1"),
    (EngineUnavailableError("restarting", retry_after=30), 503, "30"),
    (EngineOverloadedError("queue full", retry_after=2.5), 503, "3"),
    (EngineTimeoutError("slow"), 504, None),
    (EngineRejectedError("nope", status=400), 400, None),
    (EngineRejectedError("too long", status=413), 413, None),
    (EngineRejectedError("bad", status=422), 422, None),
    (EngineRejectedError("odd", status=409), 400, None),
    (EngineProtocolError("garbage"), 502, None),
    (EngineError("other"), 503, "2"),
    (RuntimeError("secret detail"), 500, None),
]


@pytest.mark.parametrize(("exc", "status", "retry_after"), CASES, ids=[type(c[0]).__name__ for c in CASES])
@pytest.mark.parametrize("dialect", ["cohere", "tei"])
def test_each_kind_has_one_status(exc: BaseException, status: int, retry_after: str | None, dialect: str) -> None:
    err = render_error(exc, dialect=dialect, request_id="rid")
    assert err.status == status
    assert dict(err.headers).get("Retry-After") == retry_after
    body = orjson.loads(err.body)
    if dialect == "tei":
        assert isinstance(body["error"], str) and body["error_type"]
    else:
        assert body["error"]["code"] == status and body["message"] == body["detail"]
    if status == 500:
        assert "secret" not in err.body.decode() and "rid" in body["message"]
    if status == 401:
        assert dict(err.headers)["WWW-Authenticate"] == "Bearer"


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    docs = orjson.loads(body or b"{}").get("text_2") or []
    return 200, orjson.dumps({"data": [{"index": i, "score": 0.5} for i in range(len(docs))], "usage": {}})


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    registry = EngineRegistry(static=[snapshot()])
    app = create_app(Settings(api_keys=("k",)), registry=registry, engine_transport=CallableTransport(_engine))
    with TestClient(app) as c:
        yield c


def _shape(body: dict[str, Any]) -> str:
    return "tei" if isinstance(body.get("error"), str) else "cohere"


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/rerank", {"query": "q", "texts": ["a"]}, "tei"),
        ("/rerank", {"query": "q", "documents": ["a"]}, "cohere"),
        ("/v1/rerank", {"query": "q", "documents": ["a"], "top_k": 1}, "cohere"),  # Voyage reads `detail`
        ("/v2/rerank", {"query": "q", "documents": ["a"]}, "cohere"),
    ],
)
def test_the_dialect_is_decided_once_from_path_and_body(
    client: TestClient, path: str, body: dict[str, Any], shape: str
) -> None:
    """The 401 (before any route runs) and a 422 (inside the route) of the same body share one shape."""
    unauthorized = client.post(path, json=body)
    assert unauthorized.status_code == 401 and _shape(unauthorized.json()) == shape
    broken = {**body, "query": {"not": "a string"}}
    invalid = client.post(path, json=broken, headers={"Authorization": "Bearer k"})
    assert invalid.status_code == 422 and _shape(invalid.json()) == shape
    ok = client.post(path, json=body, headers={"Authorization": "Bearer k"})
    assert ok.status_code == 200, ok.text


def test_a_body_that_is_not_json_is_400_in_the_paths_dialect(client: TestClient) -> None:
    r = client.post("/rerank", content=b"{nope", headers={"Authorization": "Bearer k"})
    assert r.status_code == 400 and _shape(r.json()) == "cohere"
    r = client.post("/score", content=b"[1]", headers={"Authorization": "Bearer k"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_public_health_shows_no_engine_address_pid_or_path_without_the_key(client: TestClient) -> None:
    public = client.get("/health").json()
    assert public["status"] == "ready" and public["engines"][0]["state"] == "ready"
    assert public["model_path"] is None
    for engine in (public["engine"], *public["engines"]):
        assert not {"url", "pid", "last_error"} & set(engine)
    operator = client.get("/health", headers={"Authorization": "Bearer k"}).json()
    assert operator["engines"][0]["url"] == "http://engine" and operator["model_path"]
