"""Traces from a Dagster run through its step to each Triton request, on a real Triton.

A real asset materialises in a real (temporary) Dagster instance and scores through
``TritonResource`` against the session's Triton; spans go to an in-memory exporter and the test
reads the tree: run (trace id = run id) -> step -> one ``triton.infer`` per chunk, with model,
version, batch size, retries and replica on each request span.
"""

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aios_dagster.lib import tracing
from aios_dagster.lib.run_traces import run_trace_sensors
from aios_dagster.lib.serving.launcher import LocalTritonServer
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource
from tests.otlp_receiver import OtlpReceiver
from tests.triton_fixtures import PublishFn, random_features


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.add_exporter(exporter)
    yield exporter
    exporter.shutdown()


def test_run_step_and_each_triton_request_form_one_trace(
    spans: InMemorySpanExporter,
    triton_resource: TritonResource,
    publish_random_model: PublishFn,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    published = publish_random_model(seed=3)
    triton_resource.load_model(published.name)
    x = random_features(2500, published.model.n_features)  # three chunks of at most 1024 rows

    @dg.asset
    def scored(context: dg.AssetExecutionContext, triton: TritonResource) -> None:
        with tracing.step_span(context, **{"aios.model": published.name}):
            triton.infer(published.name, x, published.output_names)
            # What the request carried: this step's trace context, in W3C form.
            context.add_output_metadata({"traceparent": tracing.inject_headers()["traceparent"]})

    spans.clear()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize([scored], resources={"triton": triton_resource}, instance=instance)
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        # The run's root span, as the run-status sensor records it when the run ends.
        succeeded = next(s for s in run_trace_sensors() if s.name == "run_traces_succeeded")
        event = instance.get_records_for_run(
            result.run_id, of_type=dg.DagsterEventType.RUN_SUCCESS
        ).records[0]
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
        succeeded(
            dg.build_run_status_sensor_context(
                sensor_name=succeeded.name,
                dagster_event=event.event_log_entry.dagster_event,
                dagster_instance=instance,
                dagster_run=run,
            )
        )

    finished = spans.get_finished_spans()
    (root,) = [s for s in finished if s.name.startswith("run ")]
    (step,) = [s for s in finished if s.name.startswith("step ")]
    requests = [s for s in finished if s.name == "triton.infer"]
    trace_id = uuid.UUID(result.run_id).int
    assert {s.context.trace_id for s in finished} == {trace_id}  # one trace: the run's
    assert root.parent is None and root.context.span_id == tracing.run_span_id(result.run_id)
    assert step.parent.span_id == root.context.span_id
    assert step.attributes["dagster.run_id"] == result.run_id
    assert step.attributes["dagster.asset_keys"] == ("scored",)
    assert len(requests) == 3
    assert {s.parent.span_id for s in requests} == {step.context.span_id}
    assert sorted(s.attributes["triton.batch_size"] for s in requests) == [452, 1024, 1024]
    for span in requests:
        assert span.attributes["triton.model"] == published.name
        assert span.attributes["triton.model_version"] == "1"
        assert span.attributes["triton.retries"] == 0
        assert span.attributes["triton.replica"] == triton_resource.url
        assert step.start_time <= span.start_time <= span.end_time <= step.end_time
    assert root.start_time <= step.start_time and step.end_time <= root.end_time
    traceparent = result.asset_materializations_for_node("scored")[0].metadata["traceparent"]
    assert traceparent.value.split("-")[1] == f"{trace_id:032x}"


def test_a_failed_request_is_an_error_span_naming_the_replica(
    spans: InMemorySpanExporter, triton_resource: TritonResource
) -> None:
    spans.clear()
    with pytest.raises(Exception, match="not_published"):
        triton_resource.infer("not_published", random_features(4, 3), ["queue_probs"])
    (span,) = [s for s in spans.get_finished_spans() if s.name == "triton.infer"]
    assert not span.status.is_ok
    assert span.attributes["triton.model"] == "not_published"
    assert any(event.name == "exception" for event in span.events)


def _triton_joins_the_run_trace(tmp: Path) -> dict[str, object]:
    """Score one request in a Dagster run against a Triton exporting its own spans; what the
    collector received. Run in a fresh interpreter by the test below (see there)."""
    spans = InMemorySpanExporter()
    tracing.add_exporter(spans)
    model = LinearHeadsModel.random(8, {"queue": 3}, seed=2)
    publish_linear_model(tmp / "repo", "traced", model)
    with OtlpReceiver() as collector:
        server = LocalTritonServer(
            tmp / "repo",
            tmp / "work",
            extra_args=(
                "--trace-config=mode=opentelemetry",
                "--trace-config=rate=1",
                "--trace-config=level=TIMESTAMPS",
                f"--trace-config=opentelemetry,url={collector.url}/v1/traces",
                "--trace-config=opentelemetry,bsp_max_export_batch_size=1",
            ),
        )
        server.start()
        try:
            triton = TritonResource(url=server.grpc_url, retry_backoff_s=0.05)
            triton.load_model("traced")
            sent: dict[str, str] = {}

            @dg.asset
            def traced_scoring(context: dg.AssetExecutionContext) -> None:
                with tracing.step_span(context):
                    sent.update(tracing.inject_headers())
                    triton.infer("traced", random_features(20, 8), ["queue_probs"])

            with dg.DagsterInstance.ephemeral() as instance:
                result = dg.materialize([traced_scoring], instance=instance)
            trace_id = f"{uuid.UUID(result.run_id).int:032x}"
            (ours,) = [s for s in spans.get_finished_spans() if s.name == "triton.infer"]
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(
                    s.trace_id == trace_id and s.name == "InferRequest" for s in collector.spans
                ):
                    break
                time.sleep(0.2)
        finally:
            server.stop()
        return {
            "success": result.success,
            "trace_id": trace_id,
            "ours": f"{ours.context.trace_id:032x}",
            "traceparent": sent.get("traceparent", ""),
            "received": sorted({(s.trace_id, s.name) for s in collector.spans}),
            "log_tail": server.log_path.read_text()[-1500:],
        }


def test_triton_joins_the_trace_of_the_run_that_called_it(tmp_path: Path) -> None:
    """Triton's own OpenTelemetry tracing (the bundled 2.51 server has it) continues the trace
    from the request's ``traceparent``: its InferRequest span is in our run's trace.

    In a fresh interpreter: in a test worker that had run whole flows before, Triton's spans
    twice joined another trace although our request span was in the run's (cause not found;
    see the closing notes of session 8). Checked here without that process's history.
    """
    script = (
        "import json, sys; from pathlib import Path; "
        "from tests.serving.test_tracing import _triton_joins_the_run_trace as check; "
        "print(json.dumps(check(Path(sys.argv[1]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=Path(__file__).parents[2],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["success"]
    assert out["ours"] == out["trace_id"]  # our request span is in the run's trace
    assert out["traceparent"].split("-")[1] == out["trace_id"]  # and so is the header
    names = {name for trace, name in out["received"] if trace == out["trace_id"]}
    assert "InferRequest" in names, (out["trace_id"], out["received"], out["log_tail"])


def test_spans_are_exported_over_otlp_when_an_endpoint_is_configured() -> None:
    """The project's exporter (OTLP/HTTP protobuf) when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set,
    in a fresh process as a code server or daemon would start."""
    script = (
        "from aios_dagster.lib import tracing\n"
        "with tracing.tracer().start_as_current_span('exported-span'):\n"
        "    pass\n"
        "tracing.provider().force_flush()\n"
    )
    with OtlpReceiver() as collector:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url}
        done = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
    (span,) = collector.spans
    assert span.name == "exported-span" and "protobuf" in span.sender
