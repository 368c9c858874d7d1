"""Decisions of emails that had none, written as parts of their days: micro-batch and real time.

Both paths decide a handful of new emails at a time, whichever days they belong to. Each day's
rows become one predictions part named after the records it holds (``...__<tag>=<hash>``), so
writing the same decisions again rewrites the same part, and the day's batch run later replaces
these parts with its own (same ``date=`` prefix). The log part follows the predictions part, so
the decision log only holds decisions that took effect.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date

import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.inference.decision_log import DECISION_LOG, log_part
from aios_dagster.lib.inference.log_chain import Link, seal
from aios_dagster.lib.inference.scoring import predictions_part
from aios_dagster.lib.lake import LakeResource


@dataclass
class Written:
    days: list[date] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    sealed: list[Link] = field(default_factory=list)


def _utc(times: pa.ChunkedArray | pa.Array) -> pa.Array:
    if times.type.tz is None:
        times = pc.assume_timezone(times, "UTC")
    return pc.cast(times, pa.timestamp("us", tz="UTC"))


def write_new_decisions(
    lake: LakeResource,
    *,
    dataset: str,
    model: str,
    version: str,
    decisions: pa.Table,
    times: pa.ChunkedArray | pa.Array,
    run_id: str,
    tag: str,
) -> Written:
    """Write ``decisions`` (rows in the order of ``times``, each row's email time) per day."""
    by_day: dict[date, list[int]] = defaultdict(list)
    for i, ts in enumerate(_utc(times).to_pylist()):
        by_day[ts.astimezone(UTC).date()].append(i)
    written = Written()
    for day, rows in sorted(by_day.items()):
        part_rows = decisions.take(pa.array(rows))
        digest = hashlib.sha1(
            "\n".join(part_rows.column("record_id").to_pylist()).encode(),
            usedforsecurity=False,
        ).hexdigest()[:16]
        part = f"{predictions_part(day, model, version)}__{tag}={digest}"
        lake.write(dataset, part_rows, part=part)
        log_name = log_part(run_id, part)
        lake.write(DECISION_LOG, part_rows, part=log_name)
        written.sealed.append(seal(lake.dataset_dir(DECISION_LOG), model, log_name))
        written.days.append(day)
        written.parts.append(part)
    return written
