"""The front door of a real service (start_service.py, 2 uvicorn workers sharing metrics across
processes) in front of the fake engine (a subprocess; what is checked here is the gateway's):
JSON logs from every process, OTLP traces from every worker, CORS, the OpenAPI document and the
docs assets, /info, timing headers and the metrics' labels."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.support.logs import json_lines
from tests.support.recorder import Recorder, exported_spans, otlp_answer, recording
from tests.support.service import ROOT, ServiceProcess
from tests.support.wait import wait_until

FAKE = str(ROOT / "tests" / "fakes" / "fake_vllm.py")
ORIGIN = "https://search.example"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Recorder]:
    with recording(otlp_answer) as r:
        yield r


@pytest.fixture(scope="module")
def svc(receiver: Recorder) -> Iterator[ServiceProcess]:
    args = [
        "--engine-command",
        shlex.join([sys.executable, FAKE]),
        "--workers",
        "2",
        "--log-format",
        "json",
        "--otlp-endpoint",
        receiver.url,
        "--otel-service-name",
        "front-door",
        "--cors-allow-origin",
        ORIGIN,
        "--ready-timeout",
        "120",
    ]
    with ServiceProcess(args, name="front-door", ready_timeout=180) as s:
        yield s


def test_docs_openapi_info_cors_and_timings(svc: ServiceProcess) -> None:
    doc = httpx.get(f"{svc.url}/openapi.json", timeout=30).json()
    assert {"/v1/rerank", "/rerank", "/v1/score", "/v1/health", "/info", "/metrics"} <= set(doc["paths"])
    assert "/docs/assets/swagger-ui-bundle.js" in httpx.get(f"{svc.url}/docs", timeout=30).text
    assert httpx.get(f"{svc.url}/docs/assets/redoc.standalone.js", timeout=30).status_code == 200
    info = httpx.get(f"{svc.url}/info", timeout=30).json()
    assert info["models"][0]["engines_ready"] == 1 and info["version"]
    preflight = httpx.options(
        f"{svc.url}/v2/rerank",
        headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        timeout=30,
    )
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == ORIGIN
    r = httpx.post(
        f"{svc.url}/v2/rerank", json={"query": "q", "documents": ["a", "b"]}, headers={"Origin": ORIGIN}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert int(r.headers["x-total-time"]) >= int(r.headers["x-inference-time"]) >= 0


def test_metrics_labels_across_workers(svc: ServiceProcess) -> None:
    for _ in range(4):
        assert httpx.get(f"{svc.url}/health", timeout=30).status_code == 200
        httpx.post(f"{svc.url}/v1/rerank", json={"query": "q", "documents": ["a", "b"]}, timeout=60)

    def scraped() -> str | None:
        text = httpx.get(f"{svc.url}/metrics", timeout=30).text
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


def test_after_stop_every_log_line_is_json_and_the_traces_were_sent(svc: ServiceProcess, receiver: Recorder) -> None:
    """Last in this module: it stops the service (each worker flushes its spans as it stops)."""
    r = httpx.post(
        f"{svc.url}/v2/rerank",
        json={"query": "q", "documents": ["a", "b"]},
        headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    assert svc.stop() == 0
    objects = json_lines(svc.log_path.read_text())
    events = {o.get("event") for o in objects}
    assert {"request_completed", "service_stopped"} <= events, sorted(e for e in events if e)
    assert any("ready at" in o["message"] for o in objects)
    spans, resource = exported_spans(receiver)
    assert resource["service.name"] == "front-door"
    request = [s for s in spans if s.name == "POST /v2/rerank" and s.trace_id.hex() == TRACE_ID]
    assert len(request) == 1 and request[0].parent_span_id.hex() == PARENT_ID
    stages = {s.name for s in spans if s.trace_id.hex() == TRACE_ID}
    assert {"parse", "plan", "engine_call", "render"} <= stages
