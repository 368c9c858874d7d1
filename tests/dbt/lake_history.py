"""A small generated bank landed for real, and real dbt builds over it (shared by the dbt tests).

Sources come from the project's generator, land through the declared connectors and the text
feature asset (Dagster, in process), and dbt builds the DuckDB warehouse in process with its
own target folder, so the checkout's manifest is never touched.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from dbt.cli.main import dbtRunner, dbtRunnerResult

from aios_dagster.definitions import build_definitions
from aios_dagster.lib.generator.customers import read_customers_csv, write_customers_csv
from aios_dagster.settings import Settings

LANDED = [
    "raw_emails",
    "raw_customers",
    "raw_transactions",
    "raw_routing_labels",
    "email_text_features",
]
LINEAGE = ("_built_at", "_changed_at", "_staged_at", "_prev_customer_id", "_prev_booked_at")


@dataclass
class LakeHistory:
    """One data folder: generated sources, the lake they landed in, and the warehouse."""

    settings: Settings
    instance: dg.DagsterInstance
    target_dir: Path
    defs: dg.Definitions = field(init=False)

    def __post_init__(self) -> None:
        self.defs = build_definitions(self.settings)

    def land(self) -> None:
        """Run the connectors and the text-feature asset over whatever the sources hold now."""
        result = self.defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=self.instance,
            asset_selection=[dg.AssetKey(key) for key in LANDED],
            raise_on_error=False,
        )
        assert result.success, [e.message for e in result.all_events if e.is_failure]

    def dbt_build(self, *extra: str, vars_: dict | None = None) -> dbtRunnerResult:
        """``dbt build`` into this folder's warehouse; fails the test with dbt's own error."""
        self.settings.warehouse_path.parent.mkdir(parents=True, exist_ok=True)
        project = str(self.settings.dbt_project_dir)
        variables = {"data_dir": str(self.settings.data_dir), **(vars_ or {})}
        args = [
            "build",
            *("--project-dir", project, "--profiles-dir", project),
            *("--target-path", str(self.target_dir), "--log-path", str(self.target_dir)),
            *("--vars", json.dumps(variables), "--quiet"),
            *extra,
        ]
        return dbtRunner().invoke(args)

    def build(self, *extra: str) -> None:
        outcome = self.dbt_build(*extra)
        assert outcome.success, f"dbt build {' '.join(extra)} failed: {failures(outcome)}"

    def connect(self) -> duckdb.DuckDBPyConnection:
        # Not read-only: in-process dbt may still hold the file, and DuckDB shares one database
        # per process only between connections of the same configuration.
        return duckdb.connect(str(self.settings.warehouse_path))

    def table(self, name: str) -> pd.DataFrame:
        """A warehouse table sorted by its first column, vectors as tuples (comparable)."""
        with self.connect() as conn:
            return comparable(conn.execute(f"select * from {name}").df())

    def add_transactions(self, rows: list[tuple]) -> None:
        """Rows of the ledger table, as the bank's system would write them (``updated_at`` now)."""
        with sqlite3.connect(self.settings.transactions_db) as conn:
            conn.executemany("insert into transactions values (?,?,?,?,?,?,?,?,?,?)", rows)

    def export_crm(self, name: str, *, segment_of: dict[str, str]) -> None:
        """A new CRM export: every customer again, ``segment_of`` changed (as a daily export)."""
        customers = read_customers_csv(self.settings.crm_csv)
        changed = [replace(c, segment=segment_of.get(c.customer_id, c.segment)) for c in customers]
        write_customers_csv(self.settings.crm_csv.with_name(name), changed)


def failures(outcome: dbtRunnerResult) -> list[str] | BaseException | None:
    """What dbt said went wrong: the failing nodes' messages, or the exception it raised."""
    if outcome.result is None or not hasattr(outcome.result, "results"):
        return outcome.exception
    return [
        f"{r.node.name}: {r.message}"
        for r in outcome.result.results
        if str(r.status) in ("error", "fail", "runtime error")
    ]


def without_lineage(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a full and an incremental build must agree on (not when a row was written)."""
    return frame.drop(columns=[c for c in LINEAGE if c in frame.columns])


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` sorted by its first column, its vectors as tuples (so frames compare)."""
    for column in frame.columns:
        if frame[column].dtype == object and len(frame) and hasattr(frame[column][0], "tolist"):
            frame[column] = frame[column].map(lambda v: tuple(v.tolist()))
    return frame.sort_values(frame.columns[0], ignore_index=True)
