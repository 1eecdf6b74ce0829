"""OpenTelemetry tracing (`--otlp-endpoint`): a server span per request, continued from the caller's
W3C `traceparent`, with the pipeline's stages under it (parse, plan, tokenize, engine_call, render) and
the engine call's `traceparent` sent to the engine.

Off (no endpoint), nothing here is imported or run: the middleware holds None and the stages are only
timed. The SDK and the OTLP/HTTP exporter come with the `otel` extra; the spans of each worker process
are batched and sent by its own exporter thread, flushed when the worker stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from engine.transport import CALL_HEADERS

if TYPE_CHECKING:  # the SDK is an optional dependency
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = ["Tracing", "traces_url"]


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: `/v1/traces` added to an endpoint given without a path (as the
    OTEL_EXPORTER_OTLP_ENDPOINT convention)."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


class Tracing:
    """One worker's tracer provider and exporter. Raises (constructor): ImportError when the SDK is
    not installed (`pip install 'vllm-rerank[otel]'`)."""

    def __init__(self, endpoint: str, *, service_name: str, service_version: str) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        resource = Resource.create({"service.name": service_name, "service.version": service_version})
        self.provider: TracerProvider = TracerProvider(resource=resource)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces_url(endpoint))))
        self.tracer: Tracer = self.provider.get_tracer("vllm_rerank.gateway")
        self._propagator = TraceContextTextMapPropagator()

    @contextlib.contextmanager
    def request(self, method: str, path: str, headers: Mapping[str, str]) -> Iterator[Span]:
        """The server span of one request, a child of the caller's `traceparent` when it sends one."""
        from opentelemetry.trace import SpanKind

        parent = self._propagator.extract(headers)
        with self.tracer.start_as_current_span(
            f"{method} {path}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": path},
        ) as span:
            yield span

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Span]:
        """A stage span under the current one; an engine call carries its `traceparent` to the engine."""
        with self.tracer.start_as_current_span(name) as span:
            if name != "engine_call":
                yield span
                return
            carrier: dict[str, str] = {}
            self._propagator.inject(carrier)
            token = CALL_HEADERS.set(carrier)
            try:
                yield span
            finally:
                CALL_HEADERS.reset(token)

    def shutdown(self) -> None:
        """Send what is batched and stop the exporter."""
        self.provider.shutdown()
