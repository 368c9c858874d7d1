"""The decision log: every decision that took effect, kept after newer ones replace it.

Scoring writes a day's log part only after that day's predictions part is in place, so each
logged decision was, at least for a while, the current one. A run that fails after committing
some days leaves those days' decisions in the log; when a re-execution scores the same emails
again, its decisions supersede them. Readers resolve which decision counts by order: for each
(record, model) the newest decision is in effect and each earlier one was superseded by the
run of the decision that came after it. The history is never rewritten.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa

DECISION_LOG = "decision_log"


def log_part(run_id: str, predictions_part: str) -> str:
    """A new log part per write: a re-run (or a retried step of the same run) adds its
    decisions beside the sealed parts, never over them (see ``log_chain``)."""
    return f"run={run_id}__{predictions_part}__w={uuid.uuid4().hex[:8]}"


def resolve(decisions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decisions oldest first, each with ``in_effect`` and, if replaced, by which run.

    Adds ``in_effect`` (bool), ``superseded_by_run`` and ``superseded_at`` (the replacing
    decision's run and time, ``None`` for the decision in effect).
    """
    by_key: dict[tuple[Any, Any], list[dict[str, Any]]] = defaultdict(list)
    for decision in decisions:
        by_key[(decision["record_id"], decision["model_name"])].append(decision)
    resolved: list[dict[str, Any]] = []
    for history in by_key.values():
        history.sort(key=lambda d: (d["scored_at"], d["run_id"]))
        for earlier, later in zip(history, [*history[1:], None], strict=True):
            resolved.append(
                {
                    **earlier,
                    "in_effect": later is None,
                    "superseded_by_run": None if later is None else later["run_id"],
                    "superseded_at": None if later is None else later["scored_at"],
                }
            )
    return sorted(resolved, key=lambda d: (d["scored_at"], d["run_id"]))


def in_effect(log_dir: Path) -> pa.Table:
    """The decisions in effect: the newest per (record, model), the whole log read once.

    For analysts and reconciliation (one row per scored email and model, however many runs
    re-scored it); ``resolve`` gives one record's history.
    """
    import duckdb

    with duckdb.connect() as conn:
        return conn.sql(
            "select * from read_parquet(?, union_by_name = true) qualify row_number() over "
            "(partition by record_id, model_name order by scored_at desc, run_id desc) = 1",
            params=[str(log_dir / "**" / "*.parquet")],
        ).to_arrow_table()
