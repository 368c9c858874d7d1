"""The demo summary counts what landed as landed and what was quarantined as quarantined, and
names the models the catalog declares."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from aios_dagster.demo_summary import summarize
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.assets import catalog
from aios_dagster.settings import Settings


def _quarantine(records: int) -> pa.Table:
    # Two rows for the first record (it broke two rules): still one quarantined record.
    offsets = ["0", *[str(i) for i in range(records)]]
    return pa.table({"source": ["inbox"] * len(offsets), "offset": offsets})


def test_landed_and_quarantined_are_counted_apart(tmp_path: Path) -> None:
    settings = Settings.from_env({"AIOS_DATA_DIR": str(tmp_path / "data")})
    lake = LakeResource(root=str(settings.lake_dir))
    # EM-2 was changed at the source and landed again: one email, two rows.
    lake.write("raw_emails", pa.table({"email_id": ["EM-1", "EM-2", "EM-2", "EM-3"]}))
    lake.write("quarantine_emails", _quarantine(2))
    lake.write("raw_customers", pa.table({"customer_id": ["C-1", "C-2"]}))
    lake.write("quarantine_customers", _quarantine(1))
    lake.write("raw_transactions", pa.table({"txn_id": ["T-1"]}))
    lake.write("raw_routing_labels", pa.table({"email_id": ["EM-1"]}))
    models = sorted(catalog())
    for i, name in enumerate(models):
        lake.write(
            f"{name}_predictions",
            pa.table(
                {
                    "record_id": ["EM-1", "EM-3"][: i + 1],
                    "model_version": ["1"] * (i + 1),
                    "needs_review": [True, False][: i + 1],
                    "scored_at": [datetime.now(UTC)] * (i + 1),
                }
            ),
        )

    summary = summarize(settings, run_id="r-1")

    assert summary["emails"] == 3  # landed, not landed + quarantined
    assert summary["customers"] == 2 and summary["transactions"] == 1
    assert summary["quarantined_by_dataset"]["emails"] == 2
    assert summary["quarantined"] == 3
    assert summary["model_name"] == ",".join(models)
    assert sorted(summary["models"]) == models
    first = summary["models"][models[0]]
    assert first["predictions"] == 1 and first["needs_review"] == 1
    assert first["model_version"] == "1" and first["dataset_drift"] is None
    # Nothing registered: no aliases, and summarizing created no registry store.
    assert first["champion"] is None and first["challenger"] is None
    assert not settings.mlflow_dir.exists()
