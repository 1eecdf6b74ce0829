"""Model names: lenient by default (any name is served, `model` names the served model);
strict mode answers 404 in the caller's dialect for names that are not served or aliased."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from engine import EngineRegistry
from gateway.app import create_app
from gateway.settings import Settings
from tests.sdk.conftest import DOCS, QUERY


@pytest.mark.parametrize("name", ["rerank-v3.5", "jina-reranker-v2-base-multilingual", "no-such-model"])
def test_lenient_default_serves_any_name(name, direct, base_url) -> None:  # type: ignore[no-untyped-def]
    served = httpx.get(f"{base_url}/health", timeout=10).json()["model"]
    assert direct("/v1/rerank", {"model": name, "query": QUERY, "documents": DOCS})["model"] == served
    assert direct("/v1/rerank", {"model": name, "query": QUERY, "documents": DOCS, "top_k": 1})["model"] == served


@pytest.fixture
def strict_app(tmp_path: Path) -> TestClient:
    """The app in-process with no engine: the model check runs before any engine is picked."""
    settings = Settings(strict_model_names=True, model_aliases=("rerank-v3.5",))
    app = create_app(settings, registry=EngineRegistry(tmp_path / "engines.json"))
    return TestClient(app)


@pytest.mark.parametrize(
    ("path", "body", "key"),
    [
        ("/v2/rerank", {"model": "rerank-english-v2.0", "query": "q", "documents": ["a"]}, "message"),
        ("/v1/rerank", {"model": "jina-reranker-m0", "query": "q", "documents": ["a"]}, "detail"),
        ("/v1/rerank", {"model": "rerank-2", "query": "q", "documents": ["a"], "top_k": None}, "detail"),
        ("/rerank", {"model": "bge", "query": "q", "texts": ["a"]}, "error"),
        ("/score", {"model": "bge", "text_1": "q", "text_2": ["a"]}, "error"),
    ],
)
def test_strict_mode_unknown_name_is_404(strict_app, path, body, key) -> None:  # type: ignore[no-untyped-def]
    with strict_app as client:
        r = client.post(path, json=body)
    assert r.status_code == 404, r.text
    assert body["model"] in str(r.json()[key])
    assert "rerank-v3.5" in r.json()["message"]  # names what is served
