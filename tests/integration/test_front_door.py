"""The front door on the shared service (real engine, 2 workers, metrics across processes): the OpenAPI
document and the docs assets, /info with what the engine really runs, TEI's timing headers on a real
rerank, and the metrics' labels and restarts counter as the multiprocess collector exports them."""

from __future__ import annotations

import re

import httpx

from tests.support.service import ServiceProcess
from tests.support.wait import wait_until


def test_documented_routes_and_offline_docs_assets(service: ServiceProcess) -> None:
    doc = httpx.get(f"{service.url}/openapi.json", timeout=30).json()
    assert {"/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/v1/health", "/info", "/metrics"} <= set(doc["paths"])
    assert "CohereV2RerankRequest" in doc["components"]["schemas"]
    page = httpx.get(f"{service.url}/docs", timeout=30).text
    assert "/docs/assets/swagger-ui-bundle.js" in page
    assert httpx.get(f"{service.url}/docs/assets/swagger-ui-bundle.js", timeout=30).status_code == 200


def test_info_and_timing_headers_with_the_real_engine(service: ServiceProcess) -> None:
    info = httpx.get(f"{service.url}/info", timeout=30).json()
    model = info["models"][0]
    assert info["model_id"] == model["model_id"] and model["engines_ready"] >= 1
    assert isinstance(info["max_input_length"], int) and info["max_input_length"] > 0  # the engine's window
    body = {"query": "what do cats eat", "documents": ["cats eat fish", "stocks fell today"]}
    r = httpx.post(f"{service.url}/v2/rerank", json=body, timeout=60)
    assert r.status_code == 200, r.text
    assert int(r.headers["x-compute-tokens"]) > 0
    assert int(r.headers["x-total-time"]) >= int(r.headers["x-inference-time"]) >= 0


def test_metrics_labels_across_workers(service: ServiceProcess) -> None:
    for _ in range(4):
        assert httpx.get(f"{service.url}/health", timeout=30).status_code == 200
        httpx.post(f"{service.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=60)

    def scraped() -> str | None:
        text = httpx.get(f"{service.url}/metrics", timeout=30).text
        health = re.search(r'vllm_rerank_requests_total\{dialect="",model="[^"]*",route="/health",status="200"\}', text)
        latency = re.search(
            r'vllm_rerank_request_duration_seconds_bucket\{dialect="cohere",le="[^"]+",model="[^"]+",'
            r'route="/v1/rerank",status="200"\}',
            text,
        )
        return text if health and latency else None

    text = wait_until(scraped, 30, 0.5, message="no dialect-less /health or labelled latency sample")
    assert "# TYPE vllm_rerank_engine_restarts_total counter" in text
    assert not re.search(r'vllm_rerank_requests_total\{dialect="[^"]+",model="[^"]*",route="/health"', text)
