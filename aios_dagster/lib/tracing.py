"""OpenTelemetry traces from a Dagster run through its steps to each Triton request.

Dagster has no tracing of its own (dagster#12353), and a run's steps may execute in separate
processes, so nothing can hand a span from the run to its steps. Instead the run *is* the trace:
its trace id is the run id (a UUID is 128 bits, as a trace id is) and its root span id is derived
from the run id, so every step span, in whatever process, names the same parent, and the root
span itself is recorded when the run ends (:func:`record_run_span`, from a run-status sensor).
Each Triton request is a child of its step's span, and its context travels in the gRPC request
headers (W3C ``traceparent``), so a Triton started with ``--trace-config mode=opentelemetry``
joins the same trace.

Spans go to this module's own provider, never OpenTelemetry's global one (MLflow installs its
own tracing there): exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, nowhere otherwise, and to any exporter a test
adds with :func:`add_exporter`. Nothing is set up at import time.
"""

from __future__ import annotations

import contextvars
import hashlib
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

SERVICE = "aios-dagster"
_lock = threading.Lock()
_provider: TracerProvider | None = None
_forced_ids: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "aios_forced_ids", default=None
)


def run_trace_id(run_id: str) -> int:
    """The trace id of a Dagster run: its run id's 128 bits (any other string is hashed)."""
    try:
        return uuid.UUID(run_id).int
    except ValueError:
        return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big")


def run_span_id(run_id: str) -> int:
    """The span id of a run's root span, the same in every process of the run."""
    return int.from_bytes(hashlib.sha256(f"span:{run_id}".encode()).digest()[:8], "big") or 1


def provider() -> TracerProvider:
    """The project's tracer provider, created on first use (OTLP export if configured)."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = _new_provider()
        return _provider


def _new_provider() -> TracerProvider:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

    class _RunIds(RandomIdGenerator):
        """Random ids, except for the root span of a run: the run's trace and span ids."""

        def generate_trace_id(self) -> int:
            forced = _forced_ids.get()
            return forced[0] if forced is not None else super().generate_trace_id()

        def generate_span_id(self) -> int:
            forced = _forced_ids.get()
            return forced[1] if forced is not None else super().generate_span_id()

    made = TracerProvider(
        resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE)}),
        id_generator=_RunIds(),
    )
    if exporting():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        made.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return made


def add_exporter(exporter: SpanExporter) -> None:
    """Send every span from now on to ``exporter`` as it ends (tests, a console exporter)."""
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider().add_span_processor(SimpleSpanProcessor(exporter))


def tracer() -> Tracer:
    return provider().get_tracer("aios_dagster")


def _run_parent(run_id: str) -> Any:
    """A context whose current span is the run's root (remote: recorded by another process)."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(
        trace_id=run_trace_id(run_id),
        span_id=run_span_id(run_id),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(NonRecordingSpan(parent))


@contextmanager
def step_span(context: Any, **attributes: Any) -> Iterator[Span]:
    """A span for one Dagster step, child of its run's root span; current while it runs.

    ``context`` is the step's execution context (asset or op); the step key, asset keys and
    partition (or range) become attributes, as do ``attributes``.
    """
    attrs: dict[str, Any] = {"dagster.run_id": context.run_id}
    step = getattr(context, "op_handle", None)
    attrs["dagster.step"] = str(step) if step is not None else context.op.name
    keys = getattr(context, "selected_asset_keys", None) or ()
    if keys:
        attrs["dagster.asset_keys"] = [k.to_user_string() for k in keys]
    if getattr(context, "has_partition_key_range", False):
        window = context.partition_key_range
        attrs["dagster.partition"] = f"{window.start}..{window.end}"
    elif getattr(context, "has_partition_key", False):
        attrs["dagster.partition"] = context.partition_key
    attrs.update({k: v for k, v in attributes.items() if v is not None})
    with tracer().start_as_current_span(
        f"step {attrs['dagster.step']}", context=_run_parent(context.run_id), attributes=attrs
    ) as span:
        yield span


def record_run_span(
    run_id: str,
    job_name: str,
    start: datetime,
    end: datetime,
    status: str,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """Record a finished run's root span (its id is the one every step span names)."""
    from opentelemetry import context as otel_context
    from opentelemetry.trace import Status, StatusCode

    token = _forced_ids.set((run_trace_id(run_id), run_span_id(run_id)))
    try:
        span = tracer().start_span(
            f"run {job_name}",
            context=otel_context.Context(),  # a root: no parent, whatever is current here
            start_time=int(start.timestamp() * 1e9),
            attributes={"dagster.run_id": run_id, "dagster.job": job_name, **(attributes or {})},
        )
    finally:
        _forced_ids.reset(token)
    span.set_status(Status(StatusCode.OK if status == "SUCCESS" else StatusCode.ERROR, status))
    span.end(end_time=int(end.timestamp() * 1e9))


def inject_headers(headers: dict[str, str] | None = None) -> dict[str, str]:
    """W3C trace context of the current span as request headers (empty outside a trace).

    The W3C propagator itself, not the process-global one: libraries in the same process
    (MLflow's tracing sets up OpenTelemetry too) must not decide what Triton receives.
    """
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    out = dict(headers or {})
    TraceContextTextMapPropagator().inject(out)
    return out


def exporting() -> bool:
    """Whether spans leave the process (an OTLP endpoint is configured)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
