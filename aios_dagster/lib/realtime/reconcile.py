"""Every landed email has exactly one current decision, whichever path decided it.

Batch, micro-batch and the real-time handler all write the same predictions dataset; this is
the proof that together they missed no email and decided none twice. "Landed" is the newest
copy of each record in ``raw_<dataset>`` received in the window, "current" a row of the
predictions dataset. Mail younger than ``grace_minutes`` is left out: it may be between landing
and its decision on any path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb

from aios_dagster.lib.lake import LakeResource


@dataclass
class Reconciliation:
    landed: int = 0
    decided: int = 0
    missing: int = 0
    twice: int = 0
    missing_sample: list[str] = field(default_factory=list)
    twice_sample: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.twice


def reconcile(
    lake: LakeResource,
    *,
    landed_dataset: str,
    predictions_dataset: str,
    id_column: str = "email_id",
    time_column: str = "received_at",
    window_days: int = 7,
    grace_minutes: float = 10.0,
    now: datetime | None = None,
) -> Reconciliation:
    """Compare the window's landed records with the current decisions (see the module doc)."""
    result = Reconciliation()
    raw = [str(p) for p in lake.parts(landed_dataset)]
    if not raw:
        return result
    decided_parts = [str(p) for p in lake.parts(predictions_dataset, "date=")]
    cutoff = (now or datetime.now(UTC)) - timedelta(minutes=grace_minutes)
    landed = (
        f"select distinct {id_column} as id from read_parquet($raw, union_by_name = true) "
        f"where {time_column} <= $cutoff and {time_column} >= (select max({time_column}) "
        f"from read_parquet($raw, union_by_name = true)) - interval '{int(window_days)} days'"
    )
    decided = (
        "select record_id as id, count(*) as n from read_parquet($decided, union_by_name = true) "
        "group by 1"
        if decided_parts
        else "select ''::varchar as id, 0 as n limit 0"
    )
    params: dict[str, object] = {"raw": raw, "cutoff": cutoff}
    if decided_parts:
        params["decided"] = decided_parts
    with duckdb.connect() as conn:
        conn.execute("set TimeZone = 'UTC'")
        rows = conn.execute(
            f"with landed as ({landed}), decided as ({decided}) "
            "select l.id, coalesce(d.n, 0) as n from landed l left join decided d on l.id = d.id "
            "order by l.id",
            params,
        ).fetchall()
    missing = [r for r in rows if r[1] == 0]
    twice = [r for r in rows if r[1] > 1]
    result.landed = len(rows)
    result.decided = len(rows) - len(missing)
    result.missing, result.twice = len(missing), len(twice)
    result.missing_sample = [r[0] for r in missing[:10]]
    result.twice_sample = [r[0] for r in twice[:10]]
    return result
