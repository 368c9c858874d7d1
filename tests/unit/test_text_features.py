"""Text features are hashed once per landed batch: a run's work follows what was landed."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from aios_dagster.lib.features.assets import TEXT_FEATURES, refresh_text_features
from aios_dagster.lib.features.text import arrow_to_vectors, hash_text
from aios_dagster.lib.lake import LakeResource


def _land(lake: LakeResource, batch: str, rows: dict[str, tuple[str, str]]) -> Path:
    table = pa.table(
        {
            "email_id": list(rows),
            "subject": [s for s, _ in rows.values()],
            "body": [b for _, b in rows.values()],
            "_ingested_at": [datetime.now(UTC)] * len(rows),
            "_batch_id": [batch] * len(rows),
        }
    )
    return lake.write("raw_emails", table, part=f"ingest_date=2026-11-10/{batch}")


def _vectors(lake: LakeResource) -> dict[str, np.ndarray]:
    table = lake.read(TEXT_FEATURES).sort_by([("_ingested_at", "ascending")])
    vectors = arrow_to_vectors(table.column("text_vec"))
    return dict(zip(table.column("email_id").to_pylist(), vectors, strict=True))


def test_only_new_or_relanded_batches_are_hashed(tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    first = _land(lake, "b1", {"e1": ("Card blocked", "My card was blocked"), "e2": (None, "hi")})
    _land(lake, "b2", {"e3": ("Loan", "Question about my loan")})

    report = refresh_text_features(lake)
    assert (report.parts_hashed, report.rows_hashed) == (2, 3)
    expected = hash_text(pd.Series(["Card blocked\nMy card was blocked"]))[0]
    np.testing.assert_allclose(_vectors(lake)["e1"], expected)
    np.testing.assert_allclose(_vectors(lake)["e2"], hash_text(pd.Series(["\nhi"]))[0])

    # nothing new: nothing hashed
    again = refresh_text_features(lake)
    assert (again.parts_hashed, again.parts_current) == (0, 2)

    # a new batch costs one batch, not the history
    _land(lake, "b3", {"e4": ("Fraud", "Unknown payment")})
    assert refresh_text_features(lake).parts_hashed == 1

    # a re-landed batch (rewritten part) is hashed again with its new text
    time.sleep(0.01)
    _land(lake, "b1", {"e1": ("Card stolen", "Someone stole my card"), "e2": (None, "hi")})
    os.utime(first, None)
    relanded = refresh_text_features(lake)
    assert relanded.parts_hashed == 1
    stolen = hash_text(pd.Series(["Card stolen\nSomeone stole my card"]))[0]
    np.testing.assert_allclose(_vectors(lake)["e1"], stolen)

    # a batch removed from the lake takes its features with it
    lake.remove_part("raw_emails", "ingest_date=2026-11-10/b3")
    assert refresh_text_features(lake).parts_removed == 1
    assert set(_vectors(lake)) == {"e1", "e2", "e3"}
