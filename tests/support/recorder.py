"""Loopback HTTP servers for tests that need a real peer: an engine stand-in that records the headers it
was sent, and an OTLP/HTTP trace receiver that decodes what an exporter sends."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["Recorder", "exported_spans", "otlp_answer", "recording"]


class Recorder(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that records what it is sent and answers with `answer(path, body)`."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.seen: list[tuple[str, dict[str, str], bytes]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                recorder.seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, payload, kind = recorder.answer(self.path, body)
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@contextlib.contextmanager
def recording(answer: Any) -> Iterator[Recorder]:
    server = Recorder(answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def otlp_answer(path: str, body: bytes) -> tuple[int, bytes, str]:
    return 200, b"", "application/x-protobuf"


def exported_spans(receiver: Recorder) -> tuple[list[Any], dict[str, Any]]:
    """Every span the receiver got (decoded ExportTraceServiceRequests) and the resource attributes."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    spans, resource = [], {}
    for path, _, body in receiver.seen:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            resource.update({a.key: a.value.string_value for a in rs.resource.attributes})
            for ss in rs.scope_spans:
                spans.extend(ss.spans)
    return spans, resource
