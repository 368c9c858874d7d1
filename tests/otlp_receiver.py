"""A minimal OTLP/HTTP trace receiver for tests: what a collector would receive, decoded.

Accepts ``POST /v1/traces`` as protobuf (OpenTelemetry's Python exporter) or JSON (Triton's
opentelemetry-cpp exporter sends JSON) and keeps each span's trace id, span id, parent and name.
"""

from __future__ import annotations

import http.server
import json
import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    sender: str  # the Content-Type it came with


class OtlpReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                kind = self.headers.get("Content-Type", "")
                receiver._add(kind, body)
                self.send_response(200)
                self.send_header("Content-Type", kind or "application/json")
                self.end_headers()
                self.wfile.write(b"{}" if "json" in kind else b"")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def _add(self, kind: str, body: bytes) -> None:
        found: list[ReceivedSpan] = []
        if "json" in kind:
            for rs in json.loads(body).get("resourceSpans", []):
                for ss in rs.get("scopeSpans", []):
                    for sp in ss.get("spans", []):
                        found.append(
                            ReceivedSpan(
                                sp["traceId"].lower(),
                                sp["spanId"].lower(),
                                sp.get("parentSpanId", "").lower(),
                                sp["name"],
                                kind,
                            )
                        )
        else:
            from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                ExportTraceServiceRequest,
            )

            request = ExportTraceServiceRequest()
            request.ParseFromString(body)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for sp in ss.spans:
                        found.append(
                            ReceivedSpan(
                                sp.trace_id.hex(),
                                sp.span_id.hex(),
                                sp.parent_span_id.hex(),
                                sp.name,
                                kind,
                            )
                        )
        with self._lock:
            self.spans.extend(found)

    def __enter__(self) -> OtlpReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
