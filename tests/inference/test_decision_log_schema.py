"""Decision-log parts written before a column existed still read with the newer columns."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.inference.audit import decisions_for


def _part(path: Path, rows: dict[str, list]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(rows), path)


def test_route_is_read_from_new_parts_even_when_the_oldest_part_lacks_it(tmp_path: Path) -> None:
    log = tmp_path / "decision_log"
    common = {
        "model_name": ["m"],
        "model_version": ["1"],
        "run_id": ["run-old"],
        "scored_at": [datetime(2026, 1, 1, tzinfo=UTC)],
        "decision": ["cards"],
    }
    # "a..." sorts first: the part from before routing existed is the first file found.
    _part(log / "a_old.parquet", {"record_id": ["EM-1"], **common})
    _part(
        log / "b_new.parquet",
        {
            "record_id": ["EM-1"],
            **common,
            "model_version": ["2"],
            "run_id": ["run-new"],
            "scored_at": [datetime(2026, 1, 2, tzinfo=UTC)],
            "route": ["canary"],
        },
    )
    _part(log / ".writing.parquet", {"record_id": ["EM-1"], "garbage": [1]})

    rows = decisions_for(log, "EM-1")

    assert [(r["run_id"], r.get("route")) for r in rows] == [
        ("run-old", None),
        ("run-new", "canary"),
    ]
