"""What a run produced, counted from the lake and reports themselves (not from run metadata)."""

from __future__ import annotations

import json

from aios_dagster.lib.contracts.landing import count_records, read_quarantine
from aios_dagster.lib.lake import LakeResource
from aios_dagster.settings import Settings


def _landed(lake: LakeResource, dataset: str, record_id: str) -> int:
    """Distinct records landed (a record changed at the source is landed again)."""
    ids = lake.read(f"raw_{dataset}", columns=[record_id]).column(record_id)
    return len(set(ids.to_pylist()))


def summarize(settings: Settings, *, run_id: str) -> dict:
    lake = LakeResource(root=str(settings.lake_dir))
    ids = {
        "emails": "email_id",
        "customers": "customer_id",
        "transactions": "txn_id",
        "routing_labels": "email_id",
    }
    counts = {ds: count_records(read_quarantine(lake, ds)) for ds in ids}
    landed = {ds: _landed(lake, ds, key) for ds, key in ids.items()}
    preds = lake.read("email_router_predictions")
    versions = sorted(set(preds.column("model_version").to_pylist()))
    reports = sorted((settings.reports_dir / "email_router_feature_drift").glob("*/summary.json"))
    drift = json.loads(reports[-1].read_text()) if reports else {}
    return {
        "emails": landed["emails"] + counts["emails"],
        "customers": landed["customers"] + counts["customers"],
        "transactions": landed["transactions"] + counts["transactions"],
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
