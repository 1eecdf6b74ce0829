"""Operations with the real engine, through extra gateways in front of the shared service's
engine (--engine-url; no extra engine start): the score cache changes nothing but speed,
/metrics aggregates several workers and proxies the engine's vllm: metrics, one log line per
request."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.support.service import ServiceProcess
from tests.support.wait import wait_until

BODY = {
    "model": "m",
    "query": "what do cats eat",
    "documents": ["cats eat fish and mice", "stocks fell today", "cats eat fish and mice", "a bowl of dry food"],
}


@pytest.fixture(scope="module")
def cached(service: ServiceProcess) -> Iterator[ServiceProcess]:
    engine_url = service.health()[1]["engine"]["url"]
    with ServiceProcess(
        ["--engine-url", engine_url, "--score-cache-size", "1000", "--workers", "2"], name="ops"
    ) as svc:
        yield svc


def _scores(r: httpx.Response) -> list[tuple[int, float]]:
    assert r.status_code == 200, r.text
    return [(x["index"], x["relevance_score"]) for x in r.json()["results"]]


def test_cache_results_are_identical_to_uncached(service: ServiceProcess, cached: ServiceProcess) -> None:
    reference = _scores(httpx.post(f"{service.url}/v2/rerank", json=BODY, timeout=60))
    for path in ("/v2/rerank", "/v2/rerank", "/v2/rerank", "/v1/rerank"):  # misses, then hits on both workers
        assert _scores(httpx.post(f"{cached.url}{path}", json=BODY, timeout=60)) == reference
    raw = httpx.post(f"{cached.url}/v2/rerank", json={**BODY, "raw_scores": True}, timeout=60).json()
    assert all("raw_score" in x for x in raw["results"])  # raw requests are cached under their own key
    health = [httpx.get(f"{cached.url}/health").json()["score_cache"] for _ in range(6)]
    assert any(h["hits"] > 0 for h in health) and all(h["enabled"] for h in health)


def test_metrics_aggregate_workers_and_include_engine_metrics(cached: ServiceProcess) -> None:
    n = 12
    for _ in range(n):
        httpx.post(f"{cached.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=60)
    httpx.post(f"{cached.url}/v1/rerank", json={"query": "", "documents": ["a"]})
    ok_re = r'vllm_rerank_requests_total\{dialect="cohere",model="[^"]+",route="/v1/rerank",status="200"\} (\S+)'
    bad_re = r'vllm_rerank_requests_total\{dialect="cohere",model="[^"]*",route="/v1/rerank",status="400"\} 1\.0'

    def counted() -> str | None:  # counters are updated once each response has gone out
        text = httpx.get(f"{cached.url}/metrics").text
        ok = re.search(ok_re, text)
        return text if ok and float(ok.group(1)) >= n and re.search(bad_re, text) else None

    # the n 200s (counted by whichever of the 2 workers served each one) and the one 400
    text = wait_until(counted, 10, message=f"the {n} x 200 and 1 x 400 were never all counted")
    for name in (
        "vllm_rerank_request_duration_seconds_bucket",
        "vllm_rerank_documents_per_request_count",
        "vllm_rerank_tokens_per_request_count",
        "vllm_rerank_inflight_requests",
        "vllm_rerank_inflight_pairs",
        'vllm_rerank_engine_state{engine="external0",model="',  # then the name the engine reports
        '",state="ready"} 1.0',
        "vllm_rerank_engine_restarts",
        "vllm_rerank_score_cache_total",
        "vllm:num_requests_running",
    ):
        assert name in text, name
    assert "vllm_rerank_gpu_memory_used_bytes" not in text  # no GPU here: absent, without error


def test_one_structured_log_line_per_request(cached: ServiceProcess) -> None:
    r = httpx.post(
        f"{cached.url}/v1/rerank",
        json={"query": "q", "documents": ["a", "b", "c"]},
        headers={"x-request-id": "req-log-test-1"},
        timeout=60,
    )
    assert r.headers["x-request-id"] == "req-log-test-1"
    bad = httpx.post(
        f"{cached.url}/v2/rerank", json={"query": "q", "documents": []}, headers={"x-request-id": "req-log-test-2"}
    )
    assert bad.json()["id"] == "req-log-test-2"

    # The line is written once the response has gone out: wait for both.
    def logged() -> list[str]:
        log = cached.log_tail(5000)
        return [line for line in log.splitlines() if "request_completed" in line and "req-log-test-" in line]

    wait_until(lambda: len(logged()) >= 2, 10, message=lambda: f"request lines: {logged()}")
    lines = logged()
    assert len(lines) == 2, lines
    assert re.search(
        r"request_id=req-log-test-1 .*dialect=cohere model=\S+ documents=3 tokens=\d+ status=200 latency_ms=", lines[0]
    )
    assert "status=400" in lines[1]
