"""Load the lake's Parquet parts into Postgres, incrementally, for dbt to build on.

DuckDB reads the parts where they lie; Postgres cannot, so the production profile copies them
into the ``lake`` schema first: one table per dataset dbt uses as a source, each row with the
path of its part as ``filename`` (the column DuckDB adds itself), so the staging SQL is the same
on both warehouses.

Incremental by part: ``lake._lake_parts`` records every part loaded with its size and change
time. A run loads the parts that are new or rewritten (a re-landed batch replaces its rows,
never adds a second copy) and deletes the rows of parts that are gone, each part in its own
transaction with its bookkeeping, so a crash leaves every part either loaded or not. Rows go in
through ADBC's bulk ingest (binary ``COPY``). A column a later part adds (a connector's schema
grew) is added to the table; a part whose column cannot join its table's type fails naming the
dataset, part, column and both types.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

LAKE_SCHEMA = "lake"
PARTS_TABLE = "_lake_parts"
# One loader at a time per database: the daily job and a micro-batch run may overlap.
_LOCK_KEY = "aios_lake_load"


@dataclass
class LoadReport:
    """What one load did, per run: the dbt asset logs it."""

    parts_loaded: int = 0
    rows_loaded: int = 0
    parts_removed: int = 0
    parts_current: int = 0
    columns_added: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        added = f"; columns added: {', '.join(self.columns_added)}" if self.columns_added else ""
        return (
            f"loaded {self.rows_loaded} rows from {self.parts_loaded} new or rewritten lake "
            f"parts, removed {self.parts_removed}, {self.parts_current} already current "
            f"({self.seconds:.1f} s){added}"
        )


class LakeLoadError(ValueError):
    """A part that cannot be loaded as it is (a type its table cannot hold): never retried."""


def pg_type(kind: pa.DataType) -> str:
    """The Postgres column type a lake column of ``kind`` is loaded as."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return "text"
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_int8(kind) or pa.types.is_int16(kind):
        return "smallint"
    if pa.types.is_int32(kind):
        return "integer"
    if pa.types.is_int64(kind):
        return "bigint"
    if pa.types.is_float32(kind):
        return "real"
    if pa.types.is_float64(kind):
        return "double precision"
    if pa.types.is_decimal(kind):
        return f"numeric({kind.precision}, {kind.scale})"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return f"{pg_type(kind.value_type)}[]"
    raise LakeLoadError(f"no Postgres type for the lake type {kind}")


def _loadable(table: pa.Table) -> pa.Table:
    """A column of nulls only has no type: it is loaded as text (what it is everywhere else).
    A fixed-size list (a text vector) goes in as a plain list: Postgres arrays have no size."""
    for i, f in enumerate(table.schema):
        if pa.types.is_null(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(pa.string()))
        elif pa.types.is_fixed_size_list(f.type):
            plain = pa.list_(f.type.value_type)
            table = table.set_column(i, f.name, table.column(i).cast(plain))
    return table


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_lake(conn: Any, lake_root: Path, datasets: Iterable[str]) -> LoadReport:
    """Bring the ``lake`` schema up to date with the parts of ``datasets`` under ``lake_root``.

    ``conn`` is an ADBC Postgres connection (DB-API, not autocommitting).
    """
    started = time.monotonic()
    report = LoadReport()
    with conn.cursor() as cur:
        # Created only when missing: in production the roles script made it, and the pipeline's
        # role has no right to create schemas (even ``if not exists`` asks for it).
        cur.execute("select 1 from pg_namespace where nspname = $1", [LAKE_SCHEMA])
        if not cur.fetchall():
            cur.execute(f"create schema {LAKE_SCHEMA}")
        cur.execute(
            f"create table if not exists {LAKE_SCHEMA}.{PARTS_TABLE} ("
            "dataset text not null, part text not null, size bigint not null, "
            "mtime_ns bigint not null, rows bigint not null, loaded_at timestamptz not null, "
            "primary key (dataset, part))"
        )
        conn.commit()
        cur.execute("select pg_advisory_lock(hashtext($1))", [_LOCK_KEY])
        cur.fetchall()
        try:
            for dataset in datasets:
                _load_dataset(conn, cur, lake_root / dataset, dataset, report)
        finally:
            conn.rollback()
            cur.execute("select pg_advisory_unlock(hashtext($1))", [_LOCK_KEY])
            cur.fetchall()
            conn.commit()
    report.seconds = time.monotonic() - started
    return report


def _columns(cur: Any, dataset: str) -> dict[str, str]:
    cur.execute(
        "select column_name, format_type(a.atttypid, a.atttypmod) "
        "from information_schema.columns c "
        "join pg_attribute a on a.attrelid = format('%I.%I', c.table_schema, c.table_name)"
        "::regclass and a.attname = c.column_name "
        "where c.table_schema = $1 and c.table_name = $2",
        [LAKE_SCHEMA, dataset],
    )
    return dict(cur.fetchall())


def _load_dataset(conn: Any, cur: Any, folder: Path, dataset: str, report: LoadReport) -> None:
    on_disk = {}
    for part in sorted(folder.rglob("*.parquet")) if folder.exists() else []:
        stat = part.stat()
        on_disk[str(part)] = (stat.st_size, stat.st_mtime_ns)
    cur.execute(
        f"select part, size, mtime_ns from {LAKE_SCHEMA}.{PARTS_TABLE} where dataset = $1",
        [dataset],
    )
    loaded = {part: (size, mtime) for part, size, mtime in cur.fetchall()}
    columns = _columns(cur, dataset)
    conn.commit()
    table_name = f"{LAKE_SCHEMA}.{_ident(dataset)}"
    for part in sorted(set(loaded) - set(on_disk)):
        if columns:
            cur.execute(f"delete from {table_name} where filename = $1", [part])
        cur.execute(
            f"delete from {LAKE_SCHEMA}.{PARTS_TABLE} where dataset = $1 and part = $2",
            [dataset, part],
        )
        conn.commit()
        report.parts_removed += 1
    for part, (size, mtime) in on_disk.items():
        if loaded.get(part) == (size, mtime):
            report.parts_current += 1
            continue
        rows = _loadable(pq.read_table(part))
        rows = rows.append_column("filename", pa.repeat(pa.scalar(part), rows.num_rows))
        try:
            types = {f.name: pg_type(f.type) for f in rows.schema}
        except LakeLoadError as exc:
            raise LakeLoadError(f"lake part {part} ({dataset}): {exc}") from None
        if not columns:
            defs = ", ".join(f"{_ident(name)} {kind}" for name, kind in types.items())
            cur.execute(f"create table {table_name} ({defs})")
            cur.execute(f"create index on {table_name} (filename)")
            columns = dict(types)
        for f in rows.schema:
            wanted = types[f.name]
            have = columns.get(f.name)
            if have is None:
                cur.execute(f"alter table {table_name} add column {_ident(f.name)} {wanted}")
                columns[f.name] = wanted
                report.columns_added.append(f"{dataset}.{f.name}")
            elif not _same_type(have, wanted):
                conn.rollback()
                raise LakeLoadError(
                    f"lake part {part}: column {f.name} is {f.type} ({wanted}) but "
                    f"{LAKE_SCHEMA}.{dataset}.{f.name} is {have}; land it with the declared "
                    "type or rebuild the table"
                )
        cur.execute(f"delete from {table_name} where filename = $1", [part])
        if rows.num_rows:
            cur.adbc_ingest(dataset, rows, mode="append", db_schema_name=LAKE_SCHEMA)
        cur.execute(
            f"insert into {LAKE_SCHEMA}.{PARTS_TABLE} "
            "(dataset, part, size, mtime_ns, rows, loaded_at) values ($1, $2, $3, $4, $5, now()) "
            "on conflict (dataset, part) do update set size = excluded.size, "
            "mtime_ns = excluded.mtime_ns, rows = excluded.rows, loaded_at = excluded.loaded_at",
            [dataset, part, size, mtime, rows.num_rows],
        )
        conn.commit()
        report.parts_loaded += 1
        report.rows_loaded += rows.num_rows


# Postgres spells some types two ways: what ``format_type`` prints for what ``pg_type`` wrote.
_SPELLING = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
}


def _same_type(have: str, wanted: str) -> bool:
    def norm(t: str) -> str:
        base, arrays = t.removesuffix("[]"), t.endswith("[]")
        return _SPELLING.get(base, base) + ("[]" if arrays else "")

    return norm(have) == norm(wanted)
