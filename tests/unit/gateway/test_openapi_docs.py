"""The OpenAPI document (every route, each dialect's request body, responses, examples, errors) and the
/docs and /redoc pages, served with their own assets and rendered by a real headless Chromium with
every host but the service unreachable."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.routing import APIRoute
from starlette.testclient import TestClient

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.openapi import DIALECT_BODIES
from gateway.routes import ops, rerank, vendors
from gateway.settings import Settings
from tests.support.inprocess import serve_app
from tests.unit.engines import snapshot


def _engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    data = orjson.loads(body or b"{}")
    docs = data.get("text_2") or data.get("input") or []
    docs = [docs] if isinstance(docs, str) else docs
    return 200, orjson.dumps({"data": [{"index": i, "score": 0.25} for i in range(len(docs))], "usage": {}})


def _app() -> Any:
    return create_app(
        Settings(), registry=EngineRegistry(static=[snapshot()]), engine_transport=CallableTransport(_engine)
    )


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(_app()) as c:
        yield c


@pytest.fixture(scope="module")
def doc(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


def _resolve(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """The component names a body schema refers to (a $ref or a oneOf of them); each must exist."""
    refs = [schema["$ref"]] if "$ref" in schema else [s["$ref"] for s in schema["oneOf"]]
    names = [r.removeprefix("#/components/schemas/") for r in refs]
    for name in names:
        assert name in doc["components"]["schemas"], f"{name} is referred to but not defined"
    return names


def test_every_route_is_in_the_document(doc: dict[str, Any]) -> None:
    """The aliases too (/v1/score, /v1/health, /models): a client reading the spec finds what answers."""
    routes = {
        (r.path, m.lower())
        for router in (rerank.router, vendors.router, ops.router)
        for r in router.routes
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    documented = {(path, method) for path, operations in doc["paths"].items() for method in operations}
    assert routes == documented
    for path in ("/v1/score", "/v1/health", "/info", "/metrics", "/models", "/v1/rerank", "/v1/ranking"):
        assert path in doc["paths"]


@pytest.mark.parametrize(
    ("path", "dialects"),
    [
        ("/v1/rerank", {"CohereV1RerankRequest", "VoyageRerankRequest"}),
        ("/v2/rerank", {"CohereV2RerankRequest"}),
        ("/rerank", {"TeiRerankRequest", "PineconeRerankRequest", "CohereV1RerankRequest"}),
        ("/score", {"ScoreRequest"}),
        ("/v1/score", {"ScoreRequest"}),
        ("/v1/ranking", {"NimRankingRequest"}),
        ("/v1/reranking", {"MixedbreadRerankRequest"}),
        ("/infinity/rerank", {"InfinityRerankRequest"}),
    ],
)
def test_scoring_routes_declare_each_dialects_body_responses_and_errors(
    doc: dict[str, Any], path: str, dialects: set[str]
) -> None:
    op = doc["paths"][path]["post"]
    body = op["requestBody"]["content"]["application/json"]
    assert set(_resolve(doc, body["schema"])) == dialects
    assert set(body["examples"]) == dialects
    for name in dialects:  # the wire model's own fields reach the schema
        props = doc["components"]["schemas"][name]["properties"]
        assert "model" in props or "text_1" in props
    ok = op["responses"]["200"]
    responses = _resolve(doc, ok["content"]["application/json"]["schema"])
    assert len(responses) == len(dialects)
    assert {"x-total-time", "x-inference-time", "x-compute-tokens"} <= set(ok["headers"])
    for status in ("400", "401", "413", "422", "429", "503", "504"):
        assert status in op["responses"], f"{path} does not document {status}"
        _resolve(doc, op["responses"][status]["content"]["application/json"]["schema"])


def test_metrics_is_text_and_ops_routes_are_tagged(doc: dict[str, Any]) -> None:
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    for path in ("/health", "/v1/health", "/v1/models", "/info", "/metrics"):
        assert doc["paths"][path]["get"]["tags"] == ["operations"]
    assert "503" in doc["paths"]["/health"]["get"]["responses"]


def _pinecone_headers(name: str) -> dict[str, str]:
    return {"X-Pinecone-API-Version": "2025-04"} if name == "PineconeRerankRequest" else {}


def test_every_example_is_answered_in_the_documented_shape(client: TestClient, doc: dict[str, Any]) -> None:
    """Each documented example, sent to its path, gets 200, and the answer has the documented fields."""
    schemas = doc["components"]["schemas"]
    seen = set()
    for path, operations in doc["paths"].items():
        op = operations.get("post")
        if op is None:
            continue
        examples = op["requestBody"]["content"]["application/json"]["examples"]
        for name, example in examples.items():
            seen.add(name)
            r = client.post(path, json=example["value"], headers=_pinecone_headers(name))
            assert r.status_code == 200, (path, name, r.text)
            response = schemas[DIALECT_BODIES[name].response]
            answer = r.json()
            item = answer[0] if isinstance(answer, list) else answer
            shape = response["items"] if response["type"] == "array" else response
            assert set(item) <= set(shape["properties"]), (path, name, set(item) - set(shape["properties"]))
    assert seen == set(DIALECT_BODIES)


def test_the_error_envelopes_are_the_ones_sent(client: TestClient, doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    r = client.post("/rerank", json={"query": "", "texts": ["a"]})
    assert set(r.json()) == set(schemas["TeiErrorResponse"]["properties"])
    r = client.post("/v2/rerank", json={"query": "", "documents": ["a"]})
    assert set(r.json()) == set(schemas["ErrorResponse"]["properties"])


def test_docs_pages_load_nothing_from_another_host(client: TestClient) -> None:
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
        assert urls, html
        assert all(u.startswith("/") for u in urls), urls
        assert "googleapis" not in html and "cdn." not in html
    for asset, kind in (
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
        ("redoc.standalone.js", "javascript"),
    ):
        r = client.get(f"/docs/assets/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"] and len(r.content) > 10_000


# ---------------------------------------------------------------------------------------------- browser
_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def _chromium(url: str, profile: Path, *extra: str) -> str:
    assert _CHROMIUM is not None
    done = subprocess.run(
        [
            _CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            # every host but the service is unreachable: a page that needs a CDN renders nothing
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=15000",
            "--window-size=1280,1800",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(_CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_docs_render_routes_and_schemas_in_a_real_browser_offline(tmp_path: Path) -> None:
    with serve_app(_app()) as base:
        swagger = _chromium(f"{base}/docs", tmp_path / "profile", "--dump-dom")
        shot = tmp_path / "docs.png"
        _chromium(f"{base}/docs", tmp_path / "profile", f"--screenshot={shot}")
        redoc = _chromium(f"{base}/redoc", tmp_path / "profile", "--dump-dom")
    print(f"\nscreenshot of /docs: {shot}")
    # Swagger UI built the operations list and the schemas section from /openapi.json
    assert "opblock-summary-path" in swagger, swagger[:2000]
    for path in ("/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/v1/health", "/metrics", "/info"):
        assert f'data-path="{path}"' in swagger, path
    for schema in ("CohereV2RerankRequest", "TeiRerankRequest", "VoyageRerankRequest"):
        assert schema in swagger, schema
    # ReDoc rendered the operations, with the dialects of /rerank as alternatives
    for text in ("Cohere v2 rerank", "TeiRerankRequest", "PineconeRerankRequest", "/v1/ranking"):
        assert text in redoc, text
    assert shot.is_file() and shot.stat().st_size > 20_000
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
