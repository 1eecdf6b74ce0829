"""Which engine endpoint a rerank goes to (--pretokenize), in-process with a scripted engine.

Pre-tokenised prompts (/classify) only for an LLM reranker whose engine runs our template, with
the setting on, a tokenizer at hand, and nothing to truncate, chunk or leave unactivated;
everything else sends texts (/score). The scripted engine's numbers are the script's own: the
scores that matter are checked against a real engine in tests/fidelity/test_pretokenize.py.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from core.ranking import sigmoid
from engine import FAMILIES, EngineRegistry
from engine.tokenizer import ModelTokenizer, qwen3_prompt
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.cli import parse_settings
from gateway.settings import Settings
from tests.unit.engines import snapshot

LLM_ENGINE: dict[str, Any] = {
    "family": "llm-reranker",
    "max_model_len": 4096,
    "model": "/models/tiny",
    "prompt_format": "qwen3-reranker",
}


class CharTokenizer:
    """A Hugging Face tokenizer stand-in: one token per character (ids = code points)."""

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def __call__(self, texts: list[str], **kwargs: Any) -> dict[str, list[list[int]]]:
        self.threads.add(threading.get_ident())
        return {"input_ids": [[ord(c) for c in t] for t in texts]}

    def encode(self, text: str, **kwargs: Any) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(map(chr, ids))


class Engine:
    """Answers /classify with the logit (prompt length mod 97) / 100 and /score with 0.5; records calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.threads: set[int] = set()

    def __call__(self, method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
        if method == "GET":  # the engine's own /metrics, proxied into ours
            return 200, b""
        self.threads.add(threading.get_ident())
        payload = orjson.loads(body or b"{}")
        self.calls.append((url.removeprefix("http://engine"), payload))
        if url.endswith("/classify"):
            data = [
                {"index": i, "label": None, "probs": [len(ids) % 97 / 100], "num_classes": 1}
                for i, ids in enumerate(payload["input"])
            ]
            tokens = sum(len(ids) for ids in payload["input"])
        else:
            data = [{"index": i, "score": 0.5} for i in range(len(payload["text_2"]))]
            tokens = len(payload["text_2"])
        return 200, orjson.dumps({"data": data, "usage": {"prompt_tokens": tokens}})

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.calls]


@pytest.fixture
def tok(monkeypatch: pytest.MonkeyPatch) -> CharTokenizer:
    raw = CharTokenizer()
    loaded = ModelTokenizer(raw, FAMILIES["llm-reranker"])
    monkeypatch.setattr("gateway.app.load_tokenizer", lambda model, family: loaded)
    return raw


def _serve(settings: Settings, engine: Engine, **state: Any) -> Iterator[TestClient]:
    registry = EngineRegistry(static=[snapshot(**{**LLM_ENGINE, **state})])
    with TestClient(create_app(settings, registry=registry, engine_transport=CallableTransport(engine))) as client:
        yield client


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def client(tok: CharTokenizer, engine: Engine) -> Iterator[TestClient]:
    yield from _serve(Settings(), engine)


def _rerank(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/v2/rerank", json={"model": "m", "query": "q", "documents": ["aa", "b"], **body})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_plain_request_sends_the_prompts_as_token_ids(client: TestClient, engine: Engine, tok: CharTokenizer) -> None:
    docs = ["first doc", "second", "ünï\ncode"]
    data = _rerank(client, documents=docs, instruction="judge")
    prompts = [qwen3_prompt("q", d, "judge") for d in docs]
    ids = [[ord(c) for c in p] for p in prompts]
    assert engine.calls == [("/classify", {"model": "m", "input": ids, "use_activation": False})]
    got = {r["index"]: r["relevance_score"] for r in data["results"]}
    assert got == {i: pytest.approx(sigmoid(len(p) % 97 / 100)) for i, p in enumerate(prompts)}
    assert data["meta"]["tokens"]["input_tokens"] == sum(map(len, prompts))  # the engine's usage, reported
    assert tok.threads and not tok.threads & engine.threads  # tokenised off the event loop


def test_duplicates_are_tokenised_and_scored_once(client: TestClient, engine: Engine) -> None:
    data = _rerank(client, documents=["x", "yy", "x"])
    assert [len(p) for p in engine.calls[0][1]["input"]] == [len(qwen3_prompt("q", d)) for d in ("x", "yy")]
    got = {r["index"]: r["relevance_score"] for r in data["results"]}
    assert got[0] == got[2] != got[1]


def test_cached_pairs_are_not_tokenised_again(tok: CharTokenizer, engine: Engine) -> None:
    for client in _serve(Settings(score_cache_size=100), engine):
        first = _rerank(client, documents=["aa", "b"])
        second = _rerank(client, documents=["b", "aa", "ccc"])
    assert [len(call[1]["input"]) for call in engine.calls] == [2, 1]  # only "ccc" the second time
    scores = {r["index"]: r["relevance_score"] for r in second["results"]}
    assert scores[1] == {r["index"]: r["relevance_score"] for r in first["results"]}[0]


@pytest.mark.parametrize(
    "body",
    [
        {"documents": ["a" * 40, "b"], "max_tokens_per_doc": 8},  # truncated by the engine
        {"documents": ["a" * 40, "b"], "max_tokens_per_doc": 8, "max_chunks_per_doc": 3},  # chunked
    ],
    ids=["truncation", "chunking"],
)
def test_requests_that_need_the_engine_to_cut_send_texts(
    client: TestClient, engine: Engine, body: dict[str, Any]
) -> None:
    path = "/v1/rerank" if "max_chunks_per_doc" in body else "/v2/rerank"
    r = client.post(path, json={"query": "q", "documents": ["aa", "b"], **body})
    assert r.status_code == 200, r.text
    assert engine.paths and set(engine.paths) == {"/score"}


def test_raw_scores_are_the_same_logits_through_classify(client: TestClient, engine: Engine) -> None:
    data = _rerank(client, raw_scores=True)
    assert engine.paths == ["/classify"]
    for r in data["results"]:
        assert r["relevance_score"] == pytest.approx(sigmoid(r["raw_score"]))


def test_pretokenize_off_sends_texts(tok: CharTokenizer, engine: Engine) -> None:
    for client in _serve(parse_settings([], {"RERANK_PRETOKENIZE": "off"}), engine):
        _rerank(client)
    assert engine.paths == ["/score"]
    assert engine.calls[0][1]["text_2"] == ["aa", "b"]


@pytest.mark.parametrize(
    "state",
    [
        {"prompt_format": None},  # external engine, or a --chat-template of its own
        {"family": "cross-encoder", "prompt_format": None},
    ],
    ids=["no-prompt-format", "cross-encoder"],
)
def test_engines_without_our_prompt_get_texts(tok: CharTokenizer, engine: Engine, state: dict[str, Any]) -> None:
    for client in _serve(Settings(), engine, **state):
        _rerank(client)
    assert engine.paths == ["/score"]


def test_no_tokenizer_sends_texts(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> None:
    monkeypatch.setattr("gateway.app.load_tokenizer", lambda model, family: None)
    for client in _serve(Settings(), engine):
        _rerank(client)
    assert engine.paths == ["/score"]


def test_metrics_count_engine_calls_by_endpoint(client: TestClient) -> None:
    def count(endpoint: str) -> float:
        needle = f'vllm_rerank_engine_requests_total{{endpoint="{endpoint}"}} '
        lines = [ln for ln in client.get("/metrics").text.splitlines() if ln.startswith(needle)]
        return float(lines[0].split()[-1]) if lines else 0.0

    before = count("classify"), count("score")
    _rerank(client)
    _rerank(client, documents=["a" * 40, "b"], max_tokens_per_doc=8)
    assert (count("classify"), count("score")) == (before[0] + 1, before[1] + 1)
