"""Observability: OTLP traces (to an in-test OTLP/HTTP receiver, with the caller's traceparent continued
and sent on to the engine), TEI's timing headers, /info, the metrics' labels, JSON logs, and a Grafana
dashboard whose every query names a metric the service exports."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.logformat import JsonFormatter, fields_of
from gateway.settings import Settings, SettingsError, load_settings
from gateway.version import VERSION
from tests.support.logs import json_lines
from tests.support.recorder import exported_spans, otlp_answer, recording
from tests.unit.engines import snapshot

ROOT = Path(__file__).resolve().parents[3]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


def _vllm_score(path: str, body: bytes) -> tuple[int, bytes, str]:
    docs = orjson.loads(body).get("text_2") or []
    data = [{"index": i, "score": 0.5 - i / 100} for i in range(len(docs))]
    return 200, orjson.dumps({"data": data, "usage": {"prompt_tokens": 9 * len(docs)}}), "application/json"


def test_traces_continue_the_callers_traceparent_and_reach_the_engine(bundled_model_path: str) -> None:
    """A real OTLP/HTTP exporter to an in-test receiver; the engine is an HTTP server behind the real
    transport, so the header is what went over the wire."""
    with recording(otlp_answer) as receiver, recording(_vllm_score) as engine:
        settings = Settings(otlp_endpoint=receiver.url, otel_service_name="rerank-under-test")
        # a 32-token window and a long document: the request is planned with the real tokenizer
        registry = EngineRegistry(static=[snapshot(url=engine.url, model=bundled_model_path, max_model_len=32)])
        with TestClient(create_app(settings, registry=registry)) as client:
            body = {"query": "capital of France", "documents": ["Paris is the capital. " * 40, "Berlin"]}
            r = client.post("/v1/rerank", json=body, headers={"traceparent": TRACEPARENT})
            assert r.status_code == 200, r.text
        # the app stopped: the worker's exporter sent what it had batched
        spans, resource = exported_spans(receiver)
    assert resource["service.name"] == "rerank-under-test"
    by_name = {s.name: s for s in spans}
    assert {"POST /v1/rerank", "parse", "plan", "tokenize", "engine_call", "render"} <= set(by_name), by_name
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}
    server = by_name["POST /v1/rerank"]
    assert server.parent_span_id.hex() == PARENT_ID and server.kind == server.SPAN_KIND_SERVER
    ids = {s.span_id: s for s in spans}
    for name in ("parse", "plan", "tokenize", "engine_call", "render"):
        s = by_name[name]  # each stage hangs under the request's span
        while s.parent_span_id in ids:
            s = ids[s.parent_span_id]
        assert s is server, name
    assert ids[by_name["tokenize"].parent_span_id].name == "plan"
    status = {a.key: a.value.int_value for a in server.attributes}["http.response.status_code"]
    assert status == 200
    (call,) = [headers for path, headers, _ in engine.seen if path == "/score"]
    assert call["traceparent"] == f"00-{TRACE_ID}-{by_name['engine_call'].span_id.hex()}-01"


def test_without_an_endpoint_nothing_is_traced_or_sent_to_the_engine() -> None:
    with recording(_vllm_score) as engine:
        app = create_app(Settings(), registry=EngineRegistry(static=[snapshot(url=engine.url)]))
        with TestClient(app) as client:
            r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"traceparent": TRACEPARENT})
            assert r.status_code == 200
    (call,) = [headers for path, headers, _ in engine.seen if path == "/score"]
    assert "traceparent" not in call


def test_an_endpoint_that_is_not_otlp_http_is_refused() -> None:
    with pytest.raises(SettingsError, match="otlp-endpoint"):
        load_settings({"otlp_endpoint": "collector:4317"}, {})


# ---------------------------------------------------------------------------------------------- timings
_ENGINE_DELAY_S = 0.12


async def _slow_engine(method: str, url: str, body: bytes | None) -> tuple[int, bytes]:
    if url.endswith("/score"):
        await asyncio.sleep(_ENGINE_DELAY_S)
        docs = orjson.loads(body or b"{}").get("text_2") or []
        data = [{"index": i, "score": 0.5} for i in range(len(docs))]
        return 200, orjson.dumps({"data": data, "usage": {"prompt_tokens": 7 * len(docs)}})
    return 200, b""


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    settings = Settings(max_documents=321, api_keys=("k",))
    app = create_app(
        settings, registry=EngineRegistry(static=[snapshot()]), engine_transport=CallableTransport(_slow_engine)
    )
    with TestClient(app, headers={"Authorization": "Bearer k"}) as c:
        yield c


TIMINGS = ("x-compute-time", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/rerank", {"query": "q", "documents": ["a", "b", "c"]}),
        ("/rerank", {"query": "q", "texts": ["a", "b", "c"]}),
        ("/v1/score", {"text_1": "q", "text_2": ["a", "b", "c"]}),
        ("/v1/ranking", {"query": {"text": "q"}, "passages": [{"text": "a"}, {"text": "b"}, {"text": "c"}]}),
    ],
)
def test_scoring_answers_carry_teis_timing_headers(client: TestClient, path: str, body: dict[str, Any]) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    t = {h: int(r.headers[h]) for h in TIMINGS}
    assert t["x-inference-time"] >= _ENGINE_DELAY_S * 1000 - 1
    assert t["x-total-time"] == t["x-compute-time"] >= t["x-inference-time"] + t["x-queue-time"]
    assert t["x-tokenization-time"] >= 0 and t["x-queue-time"] >= 0
    assert int(r.headers["x-compute-tokens"]) == 21


def test_errors_of_scoring_routes_carry_them_and_ops_routes_do_not(client: TestClient) -> None:
    r = client.post("/v1/rerank", json={"query": "q"})
    assert r.status_code == 422 and r.headers["x-inference-time"] == "0" and "x-total-time" in r.headers
    r = client.post("/v1/rerank", json={"query": "q", "documents": ["a"]}, headers={"Authorization": "Bearer no"})
    assert r.status_code == 401 and "x-total-time" in r.headers
    assert "x-total-time" not in client.get("/health").headers


# ---------------------------------------------------------------------------------------------- /info
def test_info_names_models_version_limits_and_formats(client: TestClient) -> None:
    info = client.get("/info").json()
    assert info["model_id"] == Settings().resolved_served_name and info["version"] == VERSION
    assert info["max_client_batch_size"] == 321 and info["max_body_bytes"] == Settings().max_body_bytes
    assert info["models"][0]["engines_ready"] == 1 and info["models"][0]["family"] == "bi-encoder"
    assert info["routes"]["/rerank"] == ["TEI (texts)", "Pinecone (X-Pinecone-API-Version header)", "Cohere v1 / Jina"]
    assert {"cross-encoder", "qwen3-reranker", "bi-encoder"} <= set(info["model_formats"])
    assert info["auth"] is True


def test_protect_ops_guards_info() -> None:
    app = create_app(
        Settings(api_keys=("k",), protect_ops=True),
        registry=EngineRegistry(static=[snapshot()]),
        engine_transport=CallableTransport(_slow_engine),
    )
    with TestClient(app) as c:
        assert c.get("/info").status_code == 401
        assert c.get("/info", headers={"Authorization": "Bearer k"}).status_code == 200


# ---------------------------------------------------------------------------------------------- metrics
_SAMPLE = re.compile(r"^(\w+)\{([^}]*)\} (\S+)$")


def _samples(text: str, name: str) -> list[dict[str, str]]:
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out.append(dict(re.findall(r'(\w+)="([^"]*)"', m.group(2))))
    return out


def test_metrics_label_scoring_by_dialect_only_and_count_restarts(client: TestClient) -> None:
    for path in ("/health", "/v1/health", "/v1/models", "/info"):
        assert client.get(path).status_code == 200
    assert client.post("/v2/rerank", json={"query": "q", "documents": ["a"]}).status_code == 200
    text = client.get("/metrics").text
    requests = _samples(text, "vllm_rerank_requests_total")
    for labels in requests:
        scoring = labels["route"] not in ("/health", "/v1/health", "/v1/models", "/info", "/metrics", "other")
        assert bool(labels["dialect"]) == scoring, labels
    model = Settings().resolved_served_name
    assert {"route": "/v2/rerank", "dialect": "cohere", "status": "200", "model": model} in requests
    buckets = _samples(text, "vllm_rerank_request_duration_seconds_bucket")
    assert any(
        b["route"] == "/v2/rerank" and b["dialect"] == "cohere" and b["status"] == "200" and b["model"] == model
        for b in buckets
    )
    assert "# TYPE vllm_rerank_engine_restarts_total counter" in text
    assert _samples(text, "vllm_rerank_engine_restarts_total") == [{"engine": "engine0", "model": "m"}]


# ---------------------------------------------------------------------------------------------- dashboard
_PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "irate", "increase", "histogram_quantile",
    "label_values", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "offset", "bool",
}  # fmt: skip


def _metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: label matchers, by/without lists, ranges, strings and
    Grafana variables removed; every other identifier is a function, a keyword or a metric."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"label_values\(([^,)]+),[^)]*\)", r"\1", expr)
    words = set(re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr))
    return words - _PROMQL_WORDS


def _exported_names(text: str) -> set[str]:
    """Every sample name a scrape can carry: its samples, and each declared family's (a labelled family
    with no samples yet is declared by its TYPE line)."""
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    for line in text.splitlines():
        parts = line.split()
        if line.startswith("# TYPE") and len(parts) == 4:
            family = parts[2].removesuffix("_total")
            names.update(family + s for s in suffixes.get(parts[3], ("",)))
    return names


def test_every_dashboard_query_names_a_metric_the_service_exports(client: TestClient) -> None:
    client.post("/v1/rerank", json={"query": "q", "documents": ["a"]})
    exported = _exported_names(client.get("/metrics").text)
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "vllm-rerank.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [v["definition"] for v in dashboard["templating"]["list"] if v.get("type") == "query"]
    assert len(queries) >= 15
    used: set[str] = set()
    for expr in queries:
        names = _metric_names(expr)
        assert names, f"no metric in {expr!r}"
        missing = names - exported
        assert not missing, f"{expr!r} names {sorted(missing)}, which /metrics does not export"
        used |= names
    assert {"vllm_rerank_requests_total", "vllm_rerank_request_duration_seconds_bucket"} <= used
    assert "vllm_rerank_engine_restarts_total" in used


def test_the_query_reader_finds_a_misspelt_metric() -> None:
    """The check above can fail: a query naming a metric that does not exist is caught."""
    names = _metric_names('sum by (le) (rate(vllm_rerank_request_latency_bucket{dialect!=""}[5m]))')
    assert names == {"vllm_rerank_request_latency_bucket"}


# ---------------------------------------------------------------------------------------------- logs
def test_json_fields_come_from_the_log_calls_template() -> None:
    record = logging.LogRecord(
        "vllm_rerank.access", logging.INFO, __file__, 1,
        "request_completed request_id=%s status=%d latency_ms=%.2f%s", ("r1", 422, 1.5, " error='bad: x'"), None,
    )  # fmt: skip
    assert fields_of(record) == {
        "event": "request_completed",
        "request_id": "r1",
        "status": 422,
        "latency_ms": 1.5,
        "error": "bad: x",
    }
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request_completed request_id=r1 status=422 latency_ms=1.50 error='bad: x'"
    assert line["level"] == "INFO" and line["logger"] == "vllm_rerank.access" and line["status"] == 422


_SERVE_WITH_JSON_LOGS = """
import socket, sys, threading, httpx, orjson, uvicorn
from engine import EngineRegistry
from engine.transport import CallableTransport
from gateway.app import create_app
from gateway.logformat import configure_logging
from gateway.protocol import ConnectionLimits
from gateway.server import GatewayConfig, GatewayServer
from gateway.settings import Settings
from tests.unit.engines import snapshot

def engine(method, url, body):
    docs = orjson.loads(body or b"{}").get("text_2") or []
    return 200, orjson.dumps({"data": [{"index": i, "score": 0.5} for i in range(len(docs))], "usage": {}})

settings = Settings(log_format="json")
configure_logging("info", "json")
app = create_app(settings, registry=EngineRegistry(static=[snapshot()]), engine_transport=CallableTransport(engine))
config = GatewayConfig(app, limits=ConnectionLimits(), log_format="json", log_level="info", lifespan="on")
server = GatewayServer(config=config)
sock = socket.socket(); sock.bind(("127.0.0.1", 0))
thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True); thread.start()
while not server.started:
    thread.join(0.02)
base = f"http://127.0.0.1:{sock.getsockname()[1]}"
assert httpx.post(base + "/v1/rerank", json={"query": "q", "documents": ["a", "b"]}).status_code == 200
assert httpx.post(base + "/v1/rerank", json={"query": "q"}).status_code == 422
server.should_exit = True
thread.join(10)
"""


def test_log_format_json_writes_one_object_per_line_the_request_line_included() -> None:
    """The whole stderr of a served app (uvicorn's lines and ours) is JSON lines."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", _SERVE_WITH_JSON_LOGS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    objects = json_lines(done.stderr)
    assert any(o["logger"].startswith("uvicorn") for o in objects), objects
    completed = [o for o in objects if o.get("event") == "request_completed"]
    assert [o["status"] for o in completed] == [200, 422], completed
    assert completed[0]["dialect"] == "cohere" and completed[0]["documents"] == 2
    assert isinstance(completed[0]["latency_ms"], float) and "error" in completed[1]
