"""Encoder truncation never makes the engine tokenize a document twice.

vLLM's `max_tokens_per_doc` makes the engine's single-threaded API server tokenize every
document twice (truncate, then the pair); on an H100 that cost the service 17-42% of direct
throughput (docs/gpu-performance.md). So encoders never get it:
- cross-encoders limited only by the window get `truncate_prompt_tokens` (the engine's one
  tokenizer pass truncates, as sentence-transformers does);
- a tighter `max_tokens_per_doc`, and bi-encoders, are cut here, exactly, with the model's real
  WordPiece tokenizer, and the engine gets the cut text."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient
from transformers import AutoTokenizer

from engine import FAMILIES, EngineRegistry
from engine.tokenizer import load_tokenizer
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.settings import Settings
from tests.unit.engines import snapshot

MAX_LEN = 64
WORDS = "unbelievably tokenization reranking of über-long naïve documents, 42 times: café! "


@pytest.fixture(scope="module")
def hf_tok(bundled_model_path: str) -> Any:
    return AutoTokenizer.from_pretrained(bundled_model_path)


@pytest.fixture()
def sent() -> list[dict[str, Any]]:
    return []


@pytest.fixture(params=["cross-encoder", "bi-encoder"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture()
def client(bundled_model_path: str, sent: list[dict[str, Any]], family: str) -> TestClient:
    def engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        req = orjson.loads(body or b"{}")
        sent.append(req)
        docs = req["text_2"]
        return 200, orjson.dumps(
            {"data": [{"index": i, "score": 0.5} for i in range(len(docs))], "usage": {"prompt_tokens": 1}}
        )

    registry = EngineRegistry(static=[snapshot(family=family, max_model_len=MAX_LEN, model=bundled_model_path)])
    app = create_app(Settings(), registry=registry, engine_transport=CallableTransport(engine))
    with TestClient(app) as c:
        yield c


def test_truncate_matches_the_first_tokens(bundled_model_path: str, hf_tok: Any) -> None:
    tok = load_tokenizer(bundled_model_path, FAMILIES["cross-encoder"])
    assert tok is not None
    text = WORDS * 4
    ids = hf_tok(text, add_special_tokens=False)["input_ids"]
    for n in (1, 7, 13, 30, len(ids) - 1):
        cut = tok.truncate(text, n)
        assert text.startswith(cut)  # a slice of the original, not a decoded (lower-cased) copy
        assert hf_tok(cut, add_special_tokens=False)["input_ids"] == ids[:n], n
    assert tok.truncate(text, len(ids)) == text
    assert tok.truncate(text, 0) == ""


def test_too_long_documents(client: TestClient, hf_tok: Any, sent: list[dict[str, Any]], family: str) -> None:
    query = "which documents are long"
    docs = ["short one", WORDS * 6, "another short one", "different start, " + WORDS * 3]
    r = client.post("/v1/rerank", json={"query": query, "documents": docs})
    assert r.status_code == 200, r.text
    (req,) = sent
    assert "max_tokens_per_doc" not in req
    assert req["text_1"] == query
    if family == "cross-encoder":  # the engine truncates the pair in its one tokenizer pass
        assert req["text_2"] == docs and req["truncate_prompt_tokens"] == MAX_LEN
        return
    assert "truncate_prompt_tokens" not in req
    _assert_cut(hf_tok, docs, req["text_2"], cut=(1, 3), budget=MAX_LEN - 2)  # [CLS] d [SEP]


def test_a_tighter_doc_limit_is_cut_here(client: TestClient, hf_tok: Any, sent: list[dict[str, Any]]) -> None:
    docs = ["short one", WORDS * 6, "another short one", "different start, " + WORDS * 3]
    r = client.post("/v2/rerank", json={"model": "m", "query": "q", "documents": docs, "max_tokens_per_doc": 20})
    assert r.status_code == 200, r.text
    (req,) = sent
    assert "max_tokens_per_doc" not in req and "truncate_prompt_tokens" not in req
    _assert_cut(hf_tok, docs, req["text_2"], cut=(1, 3), budget=20)


def _assert_cut(hf_tok: Any, docs: list[str], got: list[str], *, cut: tuple[int, ...], budget: int) -> None:
    for i, (doc, sent_doc) in enumerate(zip(docs, got, strict=True)):
        if i not in cut:
            assert sent_doc == doc
            continue
        assert sent_doc != doc and doc.startswith(sent_doc)
        assert (
            hf_tok(sent_doc, add_special_tokens=False)["input_ids"]
            == hf_tok(doc, add_special_tokens=False)["input_ids"][:budget]
        )


def test_documents_that_fit_by_tokens_are_sent_as_they_are(
    client: TestClient, sent: list[dict[str, Any]], family: str
) -> None:
    # over the byte bound but within the token budget: untouched
    doc = "tokenization " * 30
    r = client.post("/v1/rerank", json={"query": "q", "documents": [doc]})
    assert r.status_code == 200, r.text
    assert sent[0]["text_2"] == [doc] and "max_tokens_per_doc" not in sent[0]


def test_truncate_false_is_a_413_in_tei(client: TestClient, sent: list[dict[str, Any]]) -> None:
    r = client.post("/rerank", json={"query": "q", "texts": [WORDS * 6], "truncate": False})
    assert r.status_code == 413, r.text
    assert sent == []
