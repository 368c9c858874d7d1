"""The whole support-triage flow, end to end, with every component real.

Generated sources -> connectors (PII masked) -> GE contracts and quarantine -> dbt on DuckDB
and, for the clean run, on PostgreSQL too ->
training -> publish to a Triton model repository -> a real Triton server scores each day ->
Evidently drift report. One run without drift and one with an injected fraud wave.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
import pytest

from aios_dagster.cli_models import registry_for
from aios_dagster.definitions import build_definitions
from aios_dagster.lib.inference.audit import decisions_for
from aios_dagster.lib.lifecycle.assets import catalog
from aios_dagster.lib.lifecycle.versions import load_evaluation
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.resources import build_resources
from tests.integration.pipeline import PipelineRun
from tests.triton_fixtures import start_or_fail


def _lake(run: PipelineRun, dataset: str):
    return pq.read_table(run.settings.lake_dir / dataset)


def test_every_source_record_is_landed_or_quarantined(clean_run: PipelineRun) -> None:
    gen, summary = clean_run.generated, clean_run.summary
    quarantined = summary["quarantined_by_dataset"]
    assert summary["emails"] + quarantined["emails"] == gen.emails
    assert summary["customers"] + quarantined["customers"] == gen.customers
    assert summary["transactions"] + quarantined["transactions"] == gen.transactions
    # The summary's "emails" are the landed ones, nothing else.
    assert summary["emails"] == len(
        set(_lake(clean_run, "raw_emails").column("email_id").to_pylist())
    )
    assert _lake(clean_run, "raw_routing_labels").num_rows == gen.labels


def test_bad_records_are_quarantined_with_their_rule(clean_run: PipelineRun) -> None:
    expected_rules = {
        "emails": "column_values_to_not_be_null(sender_token)",
        "customers": "column_values_to_be_in_set(segment)",
        "transactions": "column_values_to_not_be_null(amount)",
    }
    for dataset, rule in expected_rules.items():
        quarantine = _lake(clean_run, f"quarantine_{dataset}").to_pandas()
        bad_ids = clean_run.generated.bad_records[dataset]
        assert set(quarantine["record_id"]) == set(bad_ids), dataset
        assert rule in set(quarantine["rule"]), dataset
        assert set(quarantine["contract"]) == {f"{dataset}@v1"}
        landed = _lake(clean_run, f"raw_{dataset}").to_pandas()
        assert not set(bad_ids) & set(landed.iloc[:, 0]), f"{dataset}: bad record was landed"
    assert clean_run.summary["quarantined"] == 3


def test_contract_checks_passed_and_were_recorded(clean_run: PipelineRun) -> None:
    for asset, check in [
        ("raw_emails", "emails_contract"),
        ("raw_customers", "customers_contract"),
        ("raw_transactions", "transactions_contract"),
        ("raw_routing_labels", "routing_labels_contract"),
    ]:
        record = clean_run.instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(dg.AssetKey(asset), check)]
        )[dg.AssetCheckKey(dg.AssetKey(asset), check)]
        assert record.status.value == "SUCCEEDED", (asset, check, record.status)


def test_no_raw_pii_reaches_the_lake(clean_run: PipelineRun) -> None:
    with clean_run.settings.crm_csv.open() as f:
        customers = list(csv.DictReader(f))
    secrets = {c["email"] for c in customers} | {c["account_number"] for c in customers}
    secrets |= {c["phone"] for c in customers} | {c["full_name"] for c in customers}
    # Decoded values of every text column (Parquet pages are compressed: raw bytes prove nothing).
    decoded: list[str] = []
    for folder in clean_run.settings.lake_dir.iterdir():
        table = pq.read_table(folder)
        for name in table.column_names:
            kind = str(table.schema.field(name).type)
            if kind in ("string", "large_string", "list<element: string>", "list<item: string>"):
                values = table.column(name).to_pylist()
                decoded += [str(v) for v in values if v]
    text = "\n".join(decoded)
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, f"raw PII in the lake: {leaked[:5]}"
    assert not re.search(r"\b\d{2}-\d{2}-\d{2}\b", text), "a sort code reached the lake"
    bodies = [b for b in _lake(clean_run, "raw_emails").column("body").to_pylist() if b]
    assert sum("[NAME]" in b for b in bodies) > len(bodies) / 2
    assert any("[PHONE]" in b or "[ACCOUNT]" in b for b in bodies)


def test_each_current_email_is_routed_once_by_triton_with_audit_fields(
    clean_run: PipelineRun,
) -> None:
    gen = clean_run.generated
    emails = _lake(clean_run, "raw_emails").to_pandas()
    days = emails["received_at"].dt.date
    current = emails[(days >= gen.current_start) & (days <= gen.current_end)]
    preds = _lake(clean_run, "email_router_predictions").to_pandas()
    assert len(preds) == len(current) == clean_run.summary["predictions"]
    assert preds["record_id"].is_unique
    assert set(preds["record_id"]) == set(current["email_id"])
    assert set(preds["model_name"]) == {"email_router"}
    assert set(preds["model_version"]) == {"1"}
    assert preds["input_hash"].str.len().eq(32).all()
    assert set(preds["policy"]) == {"route-or-review-v1"}
    assert preds["run_id"].nunique() == 1
    review = preds["needs_review"]
    assert (preds.loc[review, "decision"] == "human_review").all()
    assert (preds.loc[~review, "decision"] == preds.loc[~review, "queue"]).all()
    assert (preds.loc[~review, "queue_confidence"] >= 0.55).all()


def test_scoring_run_reports_each_days_figures_and_server_metrics(clean_run: PipelineRun) -> None:
    """The demo scores the week in one run; each day's materialization has that day's figures."""
    records = clean_run.instance.fetch_materializations(
        dg.AssetKey("email_router_predictions"), limit=100
    ).records
    by_day = {
        r.partition_key: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
        if r.run_id == clean_run.summary["run_id"] and r.asset_materialization is not None
    }
    emails = _lake(clean_run, "raw_emails").to_pandas()
    per_day = emails["received_at"].dt.date.astype(str).value_counts()
    gen = clean_run.generated
    days = (gen.current_end - gen.current_start).days + 1
    week = [str(gen.current_start + timedelta(days=i)) for i in range(days)]
    assert sorted(by_day) == week
    for day, meta in by_day.items():
        assert meta["dagster/row_count"] == per_day.get(day, 0), day
        assert meta["requests"] >= 1
        assert meta["latency_ms_p50"] <= meta["latency_ms_p95"] <= meta["latency_ms_p99"]
        # Triton's own counters moved by what this day sent.
        assert meta["triton_requests_ok"] == meta["requests"]
        assert meta["triton_requests_failed"] == 0
        assert meta["triton_compute_ms_per_exec"] > 0
        # One healthy replica, no failovers; its breaker is closed after the run.
        assert meta["failovers"] == 0
        assert [r["state"] for r in meta["replicas"]] == ["closed"]
    assert sum(m["dagster/row_count"] for m in by_day.values()) == clean_run.summary["predictions"]


def test_sinks_split_the_decisions_without_loss(clean_run: PipelineRun) -> None:
    preds = _lake(clean_run, "email_router_predictions").to_pandas()
    routed = _lake(clean_run, "email_router_routed_tickets").to_pandas()
    review = _lake(clean_run, "email_router_review_queue").to_pandas()
    assert len(routed) + len(review) == len(preds)
    assert set(routed["record_id"]) | set(review["record_id"]) == set(preds["record_id"])
    assert not set(routed["record_id"]) & set(review["record_id"])
    assert (review["decision"] == "human_review").all()
    assert (review["queue_confidence"] < review["min_confidence"]).all()
    assert (routed["decision"] == routed["queue"]).all()
    assert {"priority", "priority_confidence", "model_version"} <= set(routed.columns)


def test_triton_scores_equal_the_published_model_in_process(clean_run: PipelineRun) -> None:
    repo = clean_run.settings.model_repository / "email_router" / "1"
    model = LinearHeadsModel.from_npz(repo / "weights.npz")
    spec = catalog()["email_router"]
    warehouse = build_resources(clean_run.settings)["warehouse"]  # DuckDB or Postgres
    table = warehouse.query_arrow(
        f"select {', '.join((spec.id_column, *spec.feature_columns))} from email_features "
        "where cast(received_at at time zone 'UTC' as date) >= ? order by email_id",
        [clean_run.generated.current_start],
    )
    probs = model.predict_proba(spec.build_matrix(table))["queue"]
    expected = dict(
        zip(
            table.column("email_id").to_pylist(),
            np.asarray(model.heads[0].labels)[probs.argmax(axis=1)],
            strict=True,
        )
    )
    preds = _lake(clean_run, "email_router_predictions").to_pandas().set_index("record_id")
    assert len(expected) > 0
    mismatched = [k for k, v in expected.items() if preds.at[k, "queue"] != v]
    assert not mismatched


def test_model_is_useful_on_labelled_history(clean_run: PipelineRun) -> None:
    """The champion the run left in the registry, judged on the holdout it never trained on."""
    registry = registry_for(clean_run.settings)
    spec = catalog()["email_router"]
    champion = registry.get_alias("email_router", "champion")
    assert champion is not None, "the clean run left no champion in the registry"
    evaluation, _, _ = load_evaluation(registry, spec, champion)
    assert evaluation.rows > 0
    assert evaluation.head("queue").accuracy >= 0.7
    assert evaluation.head("priority").accuracy >= 0.5
    assert registry.version_tags("email_router", champion)["gate"] == "passed"


def test_rerunning_a_day_replaces_its_predictions(drift_run: PipelineRun) -> None:
    """Uses the drift run so the clean run stays as the pipeline left it for other tests."""
    defs = build_definitions(replace(drift_run.settings, triton_grpc_url=drift_run.server.grpc_url))
    day = drift_run.generated.current_start.isoformat()
    before = _lake(drift_run, "email_router_predictions").num_rows
    result = defs.resolve_job_def("triage_job").execute_in_process(
        instance=drift_run.instance,
        partition_key=day,
        asset_selection=[dg.AssetKey("email_router_predictions")],
        # Stream the day in small Arrow batches: same rows, one part, one model version.
        run_config={"ops": {"email_router_predictions": {"config": {"batch_rows": 37}}}},
    )
    assert result.success
    meta = result.asset_materializations_for_node("email_router_predictions")[0].metadata
    assert meta["requests"].value >= 2  # several batches, each its own request
    after = _lake(drift_run, "email_router_predictions").to_pandas()
    assert len(after) == before
    assert after["record_id"].is_unique
    assert after["model_version"].nunique() == 1
    day_part = sorted(
        (drift_run.settings.lake_dir / "email_router_predictions").glob(f"date={day}__*.parquet")
    )
    assert len(day_part) == 1  # that day was rewritten in place, by this run
    assert set(pq.read_table(day_part[0]).column("run_id").to_pylist()) == {result.run_id}


def test_drift_report_is_written_and_quiet_without_drift(clean_run: PipelineRun) -> None:
    html = Path(clean_run.summary["drift_report"])
    assert html.exists() and html.stat().st_size > 100_000
    assert html.with_name("drift_report.json").exists()
    assert clean_run.summary["dataset_drift"] is False


def test_injected_fraud_wave_is_reported_as_drift(drift_run: PipelineRun) -> None:
    assert drift_run.summary["dataset_drift"] is True
    assert drift_run.summary["drift_share"] >= 0.3
    check = dg.AssetCheckKey(dg.AssetKey("email_router_feature_drift"), "drift_within_threshold")
    record = drift_run.instance.event_log_storage.get_latest_asset_check_execution_by_key([check])[
        check
    ]
    assert record.status.value == "FAILED"


def test_decision_log_explains_a_routing(clean_run: PipelineRun) -> None:
    preds = _lake(clean_run, "email_router_predictions").to_pandas()
    reviewed = preds[preds["needs_review"]]
    row = (reviewed if len(reviewed) else preds).iloc[0]
    out = subprocess.run(
        [str(Path(sys.executable).with_name("aios-dagster")), "explain", row["record_id"]],
        env={**os.environ, "AIOS_DATA_DIR": str(clean_run.settings.data_dir)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(f"{row['record_id']} -> {row['decision']}")
    assert out.rstrip().endswith("In effect.")  # scored once: nothing superseded it
    assert "email_router v1" in out and row["input_hash"] in out and "route-or-review-v1" in out
    log = decisions_for(clean_run.settings.lake_dir / "decision_log", row["record_id"])
    assert log and all(d["input_hash"] == row["input_hash"] for d in log)
    assert {d["record_id"] for d in log} == {row["record_id"]}
    with pytest.raises(subprocess.CalledProcessError):
        subprocess.run(
            [str(Path(sys.executable).with_name("aios-dagster")), "explain", "EM-NOPE"],
            env={**os.environ, "AIOS_DATA_DIR": str(clean_run.settings.data_dir)},
            capture_output=True,
            check=True,
        )


def test_triton_outage_fails_clearly_and_a_rerun_recovers(drift_run: PipelineRun) -> None:
    """Triton down at job start: the run fails with the URL named and writes nothing; after
    the server comes back (same address, like a pod behind a Service) re-execution completes
    with exactly one prediction per email."""
    settings = replace(
        drift_run.settings, triton_grpc_url=drift_run.server.grpc_url, triton_ready_timeout_s=1.0
    )
    job = build_definitions(settings).resolve_job_def("scoring_job")
    day = drift_run.generated.current_end.isoformat()
    part = drift_run.settings.lake_dir / "email_router_predictions"
    before = sorted(p.name for p in part.glob(f"date={day}__*.parquet"))
    rows_before = pq.read_table(part / before[0]).num_rows

    drift_run.server.stop()
    try:
        failed = job.execute_in_process(
            instance=drift_run.instance, partition_key=day, raise_on_error=False
        )
        assert not failed.success
        errors = [  # the step's own errors (Triton calls are retried inside the resource only)
            f"{err.message} {err.cause.message if err.cause else ''}"
            for e in failed.all_events
            if (err := getattr(e.event_specific_data, "error", None)) is not None
        ]
        assert any(settings.triton_grpc_url in m for m in errors), errors
        # Nothing half-written: the day's previous predictions are untouched.
        assert sorted(p.name for p in part.glob(f"date={day}__*.parquet")) == before
    finally:
        start_or_fail(drift_run.server)

    assert drift_run.server.grpc_url == settings.triton_grpc_url
    recovered = job.execute_in_process(instance=drift_run.instance, partition_key=day)
    assert recovered.success
    table = pq.read_table(part / before[0]).to_pandas()
    assert len(table) == rows_before and table["record_id"].is_unique
    assert set(table["run_id"]) == {recovered.run_id}


def test_no_raw_pii_reaches_any_log_line_or_metadata(clean_run: PipelineRun) -> None:
    with clean_run.settings.crm_csv.open() as f:
        customers = list(csv.DictReader(f))
    secrets = {c["email"] for c in customers} | {c["account_number"] for c in customers}
    secrets |= {c["phone"] for c in customers} | {c["full_name"] for c in customers}
    records = clean_run.instance.all_logs(clean_run.summary["run_id"])
    assert len(records) > 50  # the whole run's events, with asset and check metadata
    text = "\n".join(repr(r) for r in records)
    assert "quarantine_sample" in text and "pii_masked" in text
    leaked = sorted(s for s in secrets if s and s in text)
    assert not leaked, f"raw PII in run logs or metadata: {leaked[:5]}"
