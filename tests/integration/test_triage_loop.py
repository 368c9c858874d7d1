"""Monitoring on the flow with the injected fraud wave, and the drift-to-retrain loop closed.

Runs after ``test_triage_e2e`` on the same drifted run (package fixture): the feature drift
check failed there; here the labels of the drifted week arrive, quality is measured on them,
the reference week is scored so prediction drift can be judged, and the retrain sensor turns
the failed check into a candidate that passes the gate into shadow while the champion stays.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.cli_models import registry_for
from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator import deliver_labels
from aios_dagster.lib.inference.log_chain import recorded_heads, verify
from aios_dagster.lib.lifecycle.rollout import CHALLENGER, CHAMPION
from aios_dagster.lib.monitoring.workspace import DriftWorkspace
from tests.integration.pipeline import PipelineRun

MODEL = "email_router"


def _defs(run: PipelineRun) -> dg.Definitions:
    return build_definitions(replace(run.settings, triton_grpc_url=run.server.grpc_url))


def _latest_check(run: PipelineRun, asset: str, check: str):
    key = dg.AssetCheckKey(dg.AssetKey(asset), check)
    return run.instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]


def _materialize(
    defs: dg.Definitions, run: PipelineRun, asset: str, partition: str
) -> dg.ExecuteInProcessResult:
    """One partition of one asset of the code location (its resources bound), on the run's
    instance."""
    result = dg.materialize(
        [defs.resolve_assets_def(asset)], instance=run.instance, partition_key=partition
    )
    assert result.success
    return result


def test_feature_drift_names_columns_and_files_an_evidently_report(drift_run: PipelineRun):
    record = _latest_check(drift_run, f"{MODEL}_feature_drift", "drift_within_threshold")
    evaluation = record.event.dagster_event.event_specific_data
    day = drift_run.generated.current_end.isoformat()
    assert evaluation.metadata["partition"].value == day
    drifted = evaluation.metadata["drifted"].value
    assert drifted, evaluation.description
    # The description names each drifted column with its test and score.
    for column in drifted:
        assert f"{column} (" in evaluation.description
    summary = json.loads(
        (
            drift_run.settings.reports_dir / f"{MODEL}_feature_drift" / day / "summary.json"
        ).read_text()
    )
    assert summary["dataset_drift"] is True and summary["current_window"].endswith(day)
    assert (
        drift_run.settings.reports_dir / f"{MODEL}_feature_drift" / day / "drift_report.html"
    ).exists()
    runs = DriftWorkspace(drift_run.settings.drift_workspace_dir).runs(MODEL)
    assert any({"features", f"partition:{day}"} <= set(r.tags) for r in runs)


def test_labels_arrive_and_quality_covers_only_labelled_decisions(drift_run: PipelineRun):
    defs = _defs(drift_run)
    day = drift_run.generated.current_end
    before = _materialize(defs, drift_run, f"{MODEL}_quality", day.isoformat())
    meta = before.asset_materializations_for_node(f"{MODEL}_quality")[0].metadata
    assert meta["labelled_rows"].value == 0 and meta["decisions"].value > 0

    # Agents have routed most of the week two days after it ended.
    until = datetime.combine(day + timedelta(days=2), time(), tzinfo=UTC)
    export = deliver_labels(drift_run.settings.sources_dir, until=until)
    assert export is not None
    refresh = defs.resolve_job_def("mail_refresh_job").execute_in_process(
        instance=drift_run.instance
    )
    assert refresh.success
    after = _materialize(defs, drift_run, f"{MODEL}_quality", day.isoformat())
    meta = after.asset_materializations_for_node(f"{MODEL}_quality")[0].metadata
    labelled, decisions = meta["labelled_rows"].value, meta["decisions"].value
    assert 0 < labelled <= decisions
    assert 0.0 <= meta["queue_accuracy"].value <= 1.0
    assert Path(meta["report_html"].value).exists()


def test_prediction_drift_is_judged_once_the_reference_week_is_scored(drift_run: PipelineRun):
    defs = _defs(drift_run)
    day = drift_run.generated.current_end.isoformat()
    asset = f"{MODEL}_prediction_drift"
    unjudged = _materialize(defs, drift_run, asset, day)
    meta = unjudged.asset_materializations_for_node(asset)[0].metadata
    assert meta["evaluated"].value is False and "no scored days" in meta["skipped"].value

    scoring = defs.resolve_job_def("scoring_job").execute_in_process(
        instance=drift_run.instance,
        tags={
            "dagster/asset_partition_range_start": drift_run.generated.reference_start.isoformat(),
            "dagster/asset_partition_range_end": drift_run.generated.reference_end.isoformat(),
        },
    )
    assert scoring.success
    judged = _materialize(defs, drift_run, asset, day)
    meta = judged.asset_materializations_for_node(asset)[0].metadata
    assert meta["evaluated"].value is True
    # The fraud wave sends far more mail to card_fraud: the predicted queue mix moves.
    assert "queue" in meta["drifted"].value
    assert Path(meta["report_html"].value).exists()
    assert meta["workspace_project"].value.startswith("http://127.0.0.1:")


def test_retrain_sensor_puts_a_gated_candidate_in_shadow_and_keeps_the_champion(
    drift_run: PipelineRun,
):
    defs = _defs(drift_run)
    registry = registry_for(drift_run.settings)
    champion = registry.get_alias(MODEL, CHAMPION)
    versions_before = {v.version for v in registry.versions(MODEL)}

    sensor = defs.resolve_sensor_def(f"{MODEL}_drift_retrain")
    ctx = dg.build_sensor_context(instance=drift_run.instance)
    result = sensor(ctx)
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.tags["aios/drift-partition"] == drift_run.generated.current_end.isoformat()
    # The same failed evaluation never requests a second run.
    again = sensor(dg.build_sensor_context(instance=drift_run.instance, cursor=result.cursor))
    assert not again.run_requests

    retrain = defs.resolve_job_def(request.job_name or f"{MODEL}_retrain").execute_in_process(
        instance=drift_run.instance, tags=request.tags
    )
    assert retrain.success
    new = {v.version for v in registry.versions(MODEL)} - versions_before
    assert len(new) == 1
    candidate = new.pop()
    assert registry.get_alias(MODEL, CHAMPION) == champion  # never straight to champion
    assert registry.get_alias(MODEL, CHALLENGER) == candidate
    gate = _latest_check(drift_run, f"{MODEL}_evaluation", "gate")
    assert gate.status.value == "SUCCEEDED"

    day = drift_run.generated.current_end.isoformat()
    _materialize(defs, drift_run, f"{MODEL}_shadow_predictions", day)
    rows = pq.read_table(drift_run.settings.lake_dir / f"{MODEL}_shadow_predictions").to_pandas()
    assert (rows[rows["model_version"] == str(candidate)].shape[0]) > 0


def test_audit_verify_proves_the_log_and_names_an_edited_part(drift_run: PipelineRun):
    """After every scoring path of this package ran (daily, re-run, micro-batch, reference
    week), the log verifies against the heads Dagster recorded; an edit is named."""
    env = {**os.environ, "AIOS_DATA_DIR": str(drift_run.settings.data_dir)}
    cli = [str(Path(sys.executable).with_name("aios-dagster")), "audit", "verify"]
    # The package's runs are on a temporary instance, not the data folder's: the CLI checks
    # the chains, and the heads Dagster recorded are checked here through the same function.
    ok = subprocess.run([*cli, "--no-dagster"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "email_router:" in ok.stdout and "parts intact" in ok.stdout

    heads = recorded_heads(drift_run.instance, [MODEL])
    log_dir = drift_run.settings.lake_dir / "decision_log"
    assert heads and verify(log_dir, heads) == []
    victim = sorted(p for p in log_dir.glob("*.parquet"))[0]
    original = victim.read_bytes()
    try:
        rows = pq.read_table(victim).to_pylist()
        rows[0]["decision"] = "complaints"
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(victim)), victim)
        bad = subprocess.run([*cli, "--no-dagster"], env=env, capture_output=True, text=True)
        assert bad.returncode != 0
        assert f"edited: email_router part {victim.stem}" in bad.stdout
    finally:
        victim.write_bytes(original)


def test_prometheus_scrape_reports_what_the_runs_recorded(drift_run: PipelineRun):
    """The exporter, started on the package's instance after all its runs, scraped over HTTP."""
    import socket
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from aios_dagster.lib.run_metrics import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server, thread = serve(drift_run.instance, "127.0.0.1", port)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read()
    finally:
        server.shutdown()
        thread.join(timeout=5)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }

    def newest(asset: str) -> dict:
        page = drift_run.instance.fetch_materializations(dg.AssetKey(asset), limit=1)
        return {k: v.value for k, v in page.records[0].asset_materialization.metadata.items()}

    scored = newest(f"{MODEL}_predictions")
    label = (("asset", f"{MODEL}_predictions"),)
    assert samples[("aios_triton_requests", label)] == scored["requests"] > 0
    assert samples[("aios_asset_rows", label)] == scored["dagster/row_count"]
    p95 = (("asset", f"{MODEL}_predictions"), ("quantile", "0.95"))
    assert samples[("aios_triton_latency_ms", p95)] == pytest.approx(scored["latency_ms_p95"])
    emails = newest("raw_emails")
    quarantined = (("asset", "raw_emails"),)
    assert (
        samples[("aios_connector_records_quarantined", quarantined)]
        == emails["records_quarantined"]
    )
    succeeded = (("job", "triage_job"), ("status", "SUCCESS"))
    assert samples[("aios_runs", succeeded)] >= 1
