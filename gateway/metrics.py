"""Prometheus metrics under the `vllm_rerank_` prefix, correct with several worker processes.

start_service.py sets PROMETHEUS_MULTIPROC_DIR before the workers start, so every worker
writes its samples to shared files and any worker's /metrics aggregates them all. Gauges use
`livesum` (sum over live workers). Engine state, restarts and GPU memory are read at scrape
time; the engines' own `vllm:` metrics are proxied (fetched from each engine's /metrics and
appended, labelled with `engine=` when there are several) — so one scrape covers both.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

from engine import EngineSnapshot

if TYPE_CHECKING:
    from gateway.tracing import Tracing

__all__ = [
    "ENGINE_METRICS_TTL_S",
    "METRICS",
    "TIMING_HEADERS",
    "EngineMetricsCache",
    "RequestStats",
    "count_request",
    "label_engine_metrics",
    "render_metrics",
]

# What every scoring response carries (RequestStats.timing_headers); browsers may read them (CORS).
TIMING_HEADERS = (
    "x-compute-time",
    "x-total-time",
    "x-tokenization-time",
    "x-queue-time",
    "x-inference-time",
    "x-compute-tokens",
)
_MULTIPROC = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
_TOKEN_BUCKETS = (10, 100, 1_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000)


class _Metrics:
    def __init__(self) -> None:
        self.requests = Counter(
            "vllm_rerank_requests_total",
            "HTTP requests by route, dialect (empty for ops routes: health, metrics, models, info, docs), status "
            "and model",
            ["route", "dialect", "status", "model"],
        )
        self.latency = Histogram(
            "vllm_rerank_request_duration_seconds",
            "Request latency by route, dialect (empty for ops routes), status and model",
            ["route", "dialect", "status", "model"],
            buckets=_LATENCY_BUCKETS,
        )
        self.documents = Histogram(
            "vllm_rerank_documents_per_request", "Documents per rerank request", buckets=_SIZE_BUCKETS
        )
        self.tokens = Histogram(
            "vllm_rerank_tokens_per_request", "Prompt tokens the engine counted per request", buckets=_TOKEN_BUCKETS
        )
        self.tokens_total = Counter("vllm_rerank_prompt_tokens_total", "Prompt tokens scored")
        self.inflight_requests = Gauge(
            "vllm_rerank_inflight_requests", "Requests being processed", multiprocess_mode="livesum"
        )
        self.inflight_pairs = Gauge(
            "vllm_rerank_inflight_pairs", "(query, document) pairs being scored", multiprocess_mode="livesum"
        )
        self.rejected = Counter(
            "vllm_rerank_rejected_total", "Requests refused by backpressure or engine state", ["status", "reason"]
        )
        self.engine_requests = Counter(
            "vllm_rerank_engine_requests_total",
            "Calls to the engines by vLLM endpoint: score (texts; the engine templates and tokenises) or "
            "classify (prompts the gateway tokenised, --pretokenize)",
            ["endpoint"],
        )
        self.cache = Counter("vllm_rerank_score_cache_total", "Score cache lookups", ["result"])
        self.disconnects = Counter(
            "vllm_rerank_client_disconnects_total", "Requests cancelled because the client went away"
        )
        self.connections = Gauge(
            "vllm_rerank_open_connections", "Client connections open (all workers)", multiprocess_mode="livesum"
        )
        self.connections_closed = Counter(
            "vllm_rerank_connections_closed_total",
            "Client connections the server closed itself: header_timeout, body_timeout (408), evicted (idle, "
            "at --max-connections), refused (503 at --max-connections), drain_timeout (503 at --stop-grace)",
            ["reason"],
        )


METRICS = _Metrics()

# Labelled children, looked up once per label values: `labels()` validates and locks on every call
# (~2 µs each, several per request). The label values are bounded (routes, dialects, statuses,
# served models, endpoints), and so are these.
_REQUEST_CHILDREN: dict[tuple[str, str, str, str], tuple[Counter, Histogram]] = {}
_ENGINE_CALLS: dict[str, Counter] = {}
_CACHE_HIT = METRICS.cache.labels("hit")
_CACHE_MISS = METRICS.cache.labels("miss")


def count_request(route: str, dialect: str, status: str, model: str, elapsed: float) -> None:
    """One finished request: vllm_rerank_requests_total and vllm_rerank_request_duration_seconds."""
    key = (route, dialect, status, model)
    children = _REQUEST_CHILDREN.get(key)
    if children is None:
        children = _REQUEST_CHILDREN[key] = (METRICS.requests.labels(*key), METRICS.latency.labels(*key))
    children[0].inc()
    children[1].observe(elapsed)


class _Stage:
    """One stage of a request: timed into its RequestStats, and traced where tracing is on."""

    __slots__ = ("_name", "_span", "_stats", "_t0")

    def __init__(self, stats: RequestStats, name: str) -> None:
        self._stats = stats
        self._name = name
        self._span: AbstractContextManager[object] | None = None
        self._t0 = 0.0

    def __enter__(self) -> None:
        tracing = self._stats.tracing
        if tracing is not None:
            self._span = tracing.stage(self._name)
            self._span.__enter__()
        self._t0 = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        t1 = time.perf_counter()
        stats = self._stats
        if self._name == "tokenize":
            stats.tokenize_s += t1 - self._t0
        elif self._name == "engine_call":  # calls may overlap: first sent to last answered
            if stats.engine_first is None or self._t0 < stats.engine_first:
                stats.engine_first = self._t0
            stats.engine_last = max(stats.engine_last, t1)
        if self._span is not None:
            self._span.__exit__(kind, exc, tb)


class RequestStats:
    """The pipeline's observer for one request (core.observer.RequestObserver): what the request
    log line reports (documents, tokens), the per-call counters, and the stage times of the timing
    headers (`timing_headers`)."""

    __slots__ = (
        "documents_n",
        "engine_first",
        "engine_last",
        "model_name",
        "started",
        "tokenize_s",
        "tokens_n",
        "tracing",
    )

    def __init__(self, tracing: Tracing | None = None, started: float = 0.0) -> None:
        self.model_name = ""  # the served model that scored ("" before a model was picked)
        self.documents_n: int | None = None
        self.tokens_n: int | None = None
        self.tracing = tracing
        self.started = started  # time.perf_counter() when the request came
        self.tokenize_s = 0.0
        self.engine_first: float | None = None
        self.engine_last = 0.0

    def model(self, name: str) -> None:
        self.model_name = name

    def documents(self, n: int) -> None:
        self.documents_n = n

    def tokens(self, n: int) -> None:
        self.tokens_n = n

    def cache(self, hits: int, misses: int) -> None:
        _CACHE_HIT.inc(hits)
        _CACHE_MISS.inc(misses)

    def engine_call(self, endpoint: str) -> None:
        child = _ENGINE_CALLS.get(endpoint)
        if child is None:
            child = _ENGINE_CALLS[endpoint] = METRICS.engine_requests.labels(endpoint)
        child.inc()

    def span(self, name: str) -> AbstractContextManager[object]:
        return _Stage(self, name)

    def timing_headers(self, now: float) -> list[tuple[bytes, bytes]]:
        """TEI's timing headers, in whole milliseconds: x-total-time and x-compute-time (both the
        request's time in the gateway so far, as TEI), x-tokenization-time (the gateway's tokenizer
        work), x-inference-time (first engine call sent to last answered, the engine's own queue
        included), x-queue-time (what came before the first engine call, tokenization excepted:
        parsing, planning, admission), and x-compute-tokens (prompt tokens the engine counted)."""
        total = int((now - self.started) * 1000)
        tokenize = int(self.tokenize_s * 1000)
        if self.engine_first is None:
            inference = queue = 0
        else:
            inference = int((self.engine_last - self.engine_first) * 1000)
            queue = max(0, int((self.engine_first - self.started - self.tokenize_s) * 1000))
        return [
            (b"x-compute-time", str(total).encode()),
            (b"x-total-time", str(total).encode()),
            (b"x-tokenization-time", str(tokenize).encode()),
            (b"x-queue-time", str(queue).encode()),
            (b"x-inference-time", str(inference).encode()),
            (b"x-compute-tokens", str(self.tokens_n or 0).encode()),
        ]


def _engine_families(engines: Sequence[EngineSnapshot]) -> Iterable[Metric]:
    state = GaugeMetricFamily(
        "vllm_rerank_engine_state", "1 for the engine's current state", labels=["engine", "model", "state"]
    )
    restarts = CounterMetricFamily(
        "vllm_rerank_engine_restarts", "Engine restarts since the service started", labels=["engine", "model"]
    )
    ready = GaugeMetricFamily("vllm_rerank_engines_ready", "Engines ready to take requests")
    for e in engines:
        state.add_metric([e.name, e.served_model_name, e.state.value], 1.0)
        restarts.add_metric([e.name, e.served_model_name], float(e.restarts))
    ready.add_metric([], float(sum(1 for e in engines if e.ready)))
    return [state, restarts, ready]


def _gpu_families() -> Iterable[Metric]:
    """GPU memory per device via NVML; nothing (and no error) where there is no GPU or no pynvml."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return []
    used = GaugeMetricFamily("vllm_rerank_gpu_memory_used_bytes", "GPU memory used", labels=["gpu"])
    total = GaugeMetricFamily("vllm_rerank_gpu_memory_total_bytes", "GPU memory total", labels=["gpu"])
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(i))
            used.add_metric([str(i)], float(info.used))
            total.add_metric([str(i)], float(info.total))
    finally:
        pynvml.nvmlShutdown()
    return [used, total]


class _ScrapeTimeCollector:
    def __init__(self, engines: Sequence[EngineSnapshot]) -> None:
        self.engines = engines

    def collect(self) -> Iterable[Metric]:
        yield from _engine_families(self.engines)
        yield from _gpu_families()


# How long a worker reuses the engines' /metrics texts: scrapes (unauthenticated unless --protect-ops)
# then cost each engine at most one call per worker per interval, however many scrapers there are.
ENGINE_METRICS_TTL_S = 2.0

EngineTexts = list[tuple[str, str]]


class EngineMetricsCache:
    """The engines' own metrics texts, fetched at most once per `ttl` s; concurrent scrapes wait for
    the one fetch in progress instead of starting their own."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[EngineTexts]],
        *,
        ttl: float = ENGINE_METRICS_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._clock = clock
        self._texts: EngineTexts | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    def _fresh(self) -> EngineTexts | None:
        if self._texts is not None and self._clock() - self._at < self._ttl:
            return self._texts
        return None

    async def get(self) -> EngineTexts:
        texts = self._fresh()
        if texts is not None:
            return texts
        async with self._lock:
            texts = self._fresh()
            if texts is None:
                texts = await self._fetch()
                self._texts, self._at = texts, self._clock()
            return texts


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?(\s.*)$")


def label_engine_metrics(text: str, engine: str | None) -> str:
    """Prefix each sample of an engine's exposition with `engine="<name>"` (None: unchanged)."""
    if engine is None:
        return text
    out = []
    for line in text.splitlines():
        m = _SAMPLE.match(line) if line and not line.startswith("#") else None
        if m:
            labels = f'engine="{engine}"' + (f",{m.group(3)}" if m.group(3) else "")
            out.append(f"{m.group(1)}{{{labels}}}{m.group(4)}")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def render_metrics(engines: Sequence[EngineSnapshot], engine_texts: list[tuple[str, str]]) -> bytes:
    """Our metrics (all workers) + scrape-time engine/GPU gauges + the engines' own metrics."""
    registry = CollectorRegistry()
    if _MULTIPROC:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    ours = generate_latest(registry)
    scrape = CollectorRegistry()
    scrape.register(_ScrapeTimeCollector(engines))
    parts = [ours, generate_latest(scrape)]
    several = len(engine_texts) > 1
    seen_help: set[str] = set()
    for name, text in engine_texts:
        lines = []
        for line in label_engine_metrics(text, name if several else None).splitlines():
            if line.startswith("#"):  # HELP/TYPE once per family across engines
                key = " ".join(line.split()[:3])
                if key in seen_help:
                    continue
                seen_help.add(key)
            lines.append(line)
        parts.append(("\n".join(lines) + "\n").encode())
    return b"".join(parts)
