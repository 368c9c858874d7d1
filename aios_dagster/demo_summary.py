"""What a run produced, counted from the lake and reports themselves (not from run metadata).

Landed and quarantined records are counted apart (a record is one or the other); the models
summarized are those the catalog declares.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aios_dagster.lib.contracts.landing import count_records, read_quarantine
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.assets import catalog
from aios_dagster.settings import Settings

# The demo's sources and the id that makes a record one record.
SOURCES = {
    "emails": "email_id",
    "customers": "customer_id",
    "transactions": "txn_id",
    "routing_labels": "email_id",
}


def _landed(lake: LakeResource, dataset: str, record_id: str) -> int:
    """Distinct records landed (a record changed at the source is landed again)."""
    if not lake.parts(f"raw_{dataset}"):
        return 0
    ids = lake.read(f"raw_{dataset}", columns=[record_id]).column(record_id)
    return len(set(ids.to_pylist()))


def _model(lake: LakeResource, settings: Settings, name: str) -> dict[str, Any]:
    """One model's current predictions and its latest drift report."""
    dataset = f"{name}_predictions"
    preds = lake.read(dataset) if lake.parts(dataset) else None
    reports = sorted((settings.reports_dir / f"{name}_feature_drift").glob("*/summary.json"))
    drift = json.loads(reports[-1].read_text()) if reports else {}
    return {
        "predictions": preds.num_rows if preds is not None else 0,
        "needs_review": int(sum(preds.column("needs_review").to_pylist()))
        if preds is not None
        else 0,
        "model_version": ",".join(sorted(set(preds.column("model_version").to_pylist())))
        if preds is not None
        else "",
        "drift_report": str(reports[-1].with_name("drift_report.html")) if reports else None,
        "drift_share": drift.get("drift_share"),
        "dataset_drift": drift.get("dataset_drift"),
    }


def _lifecycle(settings: Settings, lake: LakeResource, name: str) -> dict[str, Any]:
    """Which registry versions hold ``champion`` and ``challenger``, and the shadow record."""
    from aios_dagster.lib.inference.shadow_comparison import read_shadow_summary
    from aios_dagster.lib.lifecycle.registry import ModelRegistry

    store = settings.registry_tracking_uri.removeprefix("sqlite:///")
    if settings.registry_tracking_uri.startswith("sqlite:///") and not Path(store).exists():
        # Nothing was ever registered; a summary only reads, so it creates no store.
        return {
            "champion": None,
            "challenger": None,
            "registered_versions": 0,
            "shadow_days": 0,
            "shadow_agreement": None,
        }
    registry = ModelRegistry(
        tracking_uri=settings.registry_tracking_uri,
        artifact_location=settings.registry_artifact_location,
    )
    champion = registry.get_alias(name, "champion")
    challenger = registry.get_alias(name, "challenger")
    shadow = read_shadow_summary(lake, name, str(challenger)) if challenger else None
    return {
        "champion": champion,
        "challenger": challenger,
        "registered_versions": len(registry.versions(name)) if champion or challenger else 0,
        "shadow_days": len(shadow["days"]) if shadow else 0,
        "shadow_agreement": shadow["decision_agreement"] if shadow else None,
    }


def summarize(settings: Settings, *, run_id: str) -> dict[str, Any]:
    """Records landed per source, quarantined per source, and each catalog model's results.

    The top-level model fields (``predictions``, ``model_version``, drift) describe the
    catalog's models together; ``models`` has each one.
    """
    lake = LakeResource(root=str(settings.lake_dir))
    quarantined = {ds: count_records(read_quarantine(lake, ds)) for ds in SOURCES}
    landed = {ds: _landed(lake, ds, key) for ds, key in SOURCES.items()}
    models = {
        name: {**_model(lake, settings, name), **_lifecycle(settings, lake, name)}
        for name in sorted(catalog())
    }
    shares = [m["drift_share"] for m in models.values() if m["drift_share"] is not None]
    drifts = [m["dataset_drift"] for m in models.values() if m["dataset_drift"] is not None]
    reports = [m["drift_report"] for m in models.values() if m["drift_report"]]
    return {
        "emails": landed["emails"],
        "customers": landed["customers"],
        "transactions": landed["transactions"],
        "landed_by_dataset": landed,
        "quarantined": sum(quarantined.values()),
        "quarantined_by_dataset": quarantined,
        "predictions": sum(m["predictions"] for m in models.values()),
        "needs_review": sum(m["needs_review"] for m in models.values()),
        "model_name": ",".join(models),
        "model_version": ",".join(m["model_version"] for m in models.values()),
        "drift_report": reports[0] if len(reports) == 1 else (reports or None),
        "drift_share": max(shares) if shares else None,
        "dataset_drift": any(drifts) if drifts else None,
        "models": models,
        "drift_workspace": str(settings.drift_workspace_dir),
        "run_id": run_id,
    }
