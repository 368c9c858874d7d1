"""What a run produced, counted from the lake and reports themselves (not from run metadata)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from aios_dagster.settings import Settings


def _rows(folder: Path) -> int:
    return sum(pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.glob("*.parquet")))


def summarize(settings: Settings, *, run_id: str) -> dict:
    lake = settings.lake_dir
    quarantined = {
        ds: pq.read_table(lake / f"quarantine_{ds}").column("record_id").to_pylist()
        for ds in ("emails", "customers", "transactions", "routing_labels")
    }
    counts = {ds: len(set(ids)) for ds, ids in quarantined.items()}
    preds = pq.read_table(lake / "email_router_predictions")
    versions = sorted(set(preds.column("model_version").to_pylist()))
    reports = sorted((settings.reports_dir / "email_router_feature_drift").glob("*/summary.json"))
    drift = json.loads(reports[-1].read_text()) if reports else {}
    return {
        "emails": _rows(lake / "raw_emails") + counts["emails"],
        "customers": _rows(lake / "raw_customers") + counts["customers"],
        "transactions": _rows(lake / "raw_transactions") + counts["transactions"],
        "quarantined": sum(counts.values()),
        "quarantined_by_dataset": counts,
        "predictions": preds.num_rows,
        "needs_review": int(sum(preds.column("needs_review").to_pylist())),
        "model_name": "email_router",
        "model_version": ",".join(versions),
        "drift_report": str(reports[-1].with_name("drift_report.html")) if reports else None,
        "drift_share": drift.get("drift_share"),
        "dataset_drift": drift.get("dataset_drift"),
        "run_id": run_id,
    }
