"""Bad input on every rerank route: a 4xx naming the field, in the caller's dialect, never a 5xx.

In-process app with no engine: every check here runs before an engine would be picked.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from engine import EngineRegistry
from gateway.app import create_app
from gateway.settings import Settings


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    app = create_app(Settings(), registry=EngineRegistry(tmp_path_factory.mktemp("e") / "engines.json"))
    with TestClient(app) as c:
        yield c


COHERE = {"model": "m", "query": "q", "documents": ["a", "b"]}
VOYAGE = {"model": "rerank-2", "query": "q", "documents": ["a", "b"], "top_k": None, "truncation": True}
TEI = {"query": "q", "texts": ["a", "b"]}
SCORE = {"model": "m", "text_1": "q", "text_2": ["a", "b"]}

CASES = [
    # path, base body, patch, status, param
    ("/v2/rerank", COHERE, {"query": "  "}, 400, "query"),
    ("/v2/rerank", COHERE, {"documents": []}, 400, "documents"),
    ("/v2/rerank", COHERE, {"documents": ["a", ""]}, 400, "documents[1]"),
    ("/v2/rerank", COHERE, {"documents": "a"}, 422, "documents"),
    ("/v2/rerank", COHERE, {"top_n": 0}, 400, "top_n"),
    ("/v2/rerank", COHERE, {"documents": ["a"] * 10_001}, 400, "documents"),
    ("/v1/rerank", COHERE, {"query": ""}, 400, "query"),
    ("/v1/rerank", COHERE, {"documents": [{"title": "no text"}]}, 400, "documents[0]"),
    ("/v1/rerank", COHERE, {"top_n": -1}, 400, "top_n"),
    ("/v1/rerank", COHERE, {"query": 5}, 422, "query"),
    ("/v1/rerank", VOYAGE, {"documents": []}, 400, "documents"),
    ("/v1/rerank", VOYAGE, {"top_k": 0}, 400, "top_k"),
    ("/v1/rerank", VOYAGE, {"truncation": "yes please"}, 422, "truncation"),
    ("/rerank", TEI, {"texts": []}, 400, "texts"),
    ("/rerank", TEI, {"query": " "}, 400, "query"),
    ("/rerank", TEI, {"texts": [1, 2]}, 422, "texts.0"),
    ("/rerank", COHERE, {"documents": []}, 400, "documents"),
    ("/score", SCORE, {"text_2": []}, 400, "text_2"),
    ("/v1/score", SCORE, {"text_1": ["q1", "q2", "q3"]}, 400, "text_2"),
    ("/score", SCORE, {"text_1": None}, 400, "text_1"),
]


@pytest.mark.parametrize(("path", "base", "patch", "status", "param"), CASES)
def test_bad_input(client, path, base, patch, status, param) -> None:  # type: ignore[no-untyped-def]
    r = client.post(path, json={**base, **patch})
    assert r.status_code == status, r.text
    body = r.json()
    assert param.split(".")[0].split("[")[0].rstrip("s") in body["message"]  # the message names the field
    assert body["detail"] == body["message"]  # Jina integrations and Voyage read `detail`
    if path == "/rerank" and "texts" in base:
        assert body["error"] == body["message"] and body["error_type"]  # TEI's own shape
    else:
        assert body["error"]["param"] == param
        assert body["id"]


def test_not_json_is_400(client) -> None:  # type: ignore[no-untyped-def]
    r = client.post("/v1/rerank", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"
