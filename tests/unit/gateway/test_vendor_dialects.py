"""The vendor dialects through the gateway (a scripted engine: errors and auth only, no scores):
every path needs the key, Pinecone's key may come as `Api-Key`, and each dialect's errors, the
401 before any route and the 422/400 inside one, share that dialect's envelope."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from compat.detect import VENDOR_PATHS
from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.middleware import INFERENCE_PATHS, JSON_PATHS
from gateway.settings import Settings
from tests.unit.engines import snapshot

KEY = {"Authorization": "Bearer k"}
PINECONE = {"X-Pinecone-Api-Version": "2026-07"}


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
    if isinstance(body.get("error"), dict) and isinstance(body["error"].get("code"), str):
        return "pinecone"
    return "superset" if {"message", "detail", "error"} <= body.keys() else "other"


CASES = [
    ("/v1/ranking", {"model": "m", "query": {"text": "q"}, "passages": [{"text": "a"}]}, {}, "superset"),
    ("/v1/reranking", {"model": "m", "query": "q", "input": ["a"]}, {}, "superset"),
    ("/infinity/rerank", {"model": "m", "query": "q", "documents": ["a"]}, {}, "superset"),
    ("/rerank", {"model": "m", "query": "q", "documents": [{"text": "a"}]}, PINECONE, "pinecone"),
]


def test_every_vendor_path_is_an_inference_path_with_a_json_body() -> None:
    assert set(VENDOR_PATHS) <= INFERENCE_PATHS and set(VENDOR_PATHS) <= JSON_PATHS


@pytest.mark.parametrize(("path", "body", "headers", "shape"), CASES)
def test_the_dialect_is_decided_once(
    client: TestClient, path: str, body: dict[str, Any], headers: dict[str, str], shape: str
) -> None:
    unauthorized = client.post(path, json=body, headers=headers)
    assert unauthorized.status_code == 401 and _shape(unauthorized.json()) == shape
    broken = {**body, "query": 7}
    invalid = client.post(path, json=broken, headers={**headers, **KEY})
    assert invalid.status_code == 422 and _shape(invalid.json()) == shape, invalid.text
    empty = {k: ([] if isinstance(v, list) else v) for k, v in body.items()}
    refused = client.post(path, json=empty, headers={**headers, **KEY})
    assert refused.status_code == 400 and _shape(refused.json()) == shape
    ok = client.post(path, json=body, headers={**headers, **KEY})
    assert ok.status_code == 200, ok.text


def test_pinecone_errors_are_pinecones_envelope(client: TestClient) -> None:
    r = client.post("/rerank", json={"model": "m", "query": "q", "documents": []}, headers={**PINECONE, **KEY})
    assert r.status_code == 400
    assert r.json() == {
        "error": {
            "code": "INVALID_ARGUMENT",
            "message": "invalid request: list of documents must not be empty",
            "details": {"param": "documents", "request_id": r.headers["x-request-id"]},
        },
        "status": 400,
    }
    r = client.post("/rerank", json={"model": "m", "query": "q", "documents": ["a"]}, headers=PINECONE)
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHENTICATED"


def test_pinecone_clients_may_send_the_key_as_api_key(client: TestClient) -> None:
    body = {"model": "m", "query": "q", "documents": [{"id": "x", "text": "a"}]}
    ok = client.post("/rerank", json=body, headers={**PINECONE, "Api-Key": "k"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["data"][0]["document"] == {"id": "x", "text": "a"}
    wrong = client.post("/rerank", json=body, headers={**PINECONE, "Api-Key": "nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["message"] == "invalid api token"
    # only Pinecone's dialect reads Api-Key
    other = client.post("/v1/reranking", json={"query": "q", "input": ["a"]}, headers={"Api-Key": "k"})
    assert other.status_code == 401
