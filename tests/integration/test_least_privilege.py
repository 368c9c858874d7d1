"""Least privilege in Postgres: the bank replica's connector role and the warehouse's roles.

``deploy/postgres/bank_reader.sql`` is applied to a scratch database of the machine's real
PostgreSQL; the connector lands the bank's rows as that role, and every kind of write the role
could attempt is refused, by its grants and again by its read-only sessions.
``deploy/postgres/warehouse_roles.sql`` is applied to another: the pipeline's role loads the lake
into it, a reader reads what was loaded, and every write the reader could attempt is refused.
"""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aios_dagster.lib.connectors.sql_source import SqlReader, SqlSourceConfig
from aios_dagster.lib.lake_load import load_lake
from aios_dagster.lib.warehouse import WarehouseResource
from tests.postgres import SERVER, scratch

SCRIPT = Path(__file__).parents[2] / "deploy" / "postgres" / "bank_reader.sql"
WAREHOUSE_SCRIPT = SCRIPT.with_name("warehouse_roles.sql")


def _render(script: str, **names: str) -> str:
    """psql's ``:"name"`` variables as quoted identifiers (what ``psql -v`` would substitute)."""

    def identifier(match: re.Match[str]) -> str:
        return '"' + names[match.group(1)].replace('"', '""') + '"'

    return re.sub(r':"(\w+)"', identifier, script)


@pytest.fixture
def bank() -> Iterator[tuple[str, str]]:
    """A scratch bank database with the script applied: (database, connector role)."""
    suffix = uuid.uuid4().hex[:8]
    reader, connector = f"aios_bank_reader_{suffix}", f"aios_bank_connector_{suffix}"
    try:
        with scratch("database", "bank") as database:
            with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as admin:
                admin.execute(
                    "create table transactions (txn_id text primary key, amount numeric, "
                    "updated_at timestamptz not null)"
                )
                admin.execute(
                    "insert into transactions select 'T' || g, g * 1.5, "
                    "timestamptz '2026-11-01' + g * interval '1 minute' "
                    "from generate_series(1, 500) g"
                )
                admin.execute(
                    _render(
                        SCRIPT.read_text(),
                        bank_schema="public",
                        reader_role=reader,
                        connector_role=connector,
                        DBNAME=database,
                    )
                )
                # A table the bank adds later: readable through the default privileges.
                admin.execute("create table disputes (txn_id text, opened_at timestamptz)")
            yield database, connector
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'drop role if exists "{connector}"')
            admin.execute(f'drop role if exists "{reader}"')


def test_the_connector_role_lands_the_bank_rows(bank: tuple[str, str]) -> None:
    database, connector = bank
    reader = SqlReader(
        SqlSourceConfig(
            dsn=f"postgresql://{connector}@127.0.0.1:5432/{database}",
            table="transactions",
            watermark_column="updated_at",
            id_column="txn_id",
        )
    )
    rows = sum(batch.table.num_rows for batch in reader.batches({}))
    assert rows == 500


@pytest.mark.parametrize(
    "statement",
    [
        "insert into transactions values ('T9999', 1, now())",
        "update transactions set amount = 0",
        "delete from transactions",
        "truncate transactions",
        "drop table transactions",
        "create table stolen (x int)",
        "create temporary table scratch (x int)",
        "insert into disputes values ('T1', now())",
    ],
)
def test_every_write_is_refused(bank: tuple[str, str], statement: str) -> None:
    database, connector = bank
    with psycopg.connect(f"{SERVER.replace('postgres@', connector + '@')}/{database}") as conn:
        assert conn.execute("select count(*) from disputes").fetchone() == (0,)
        with pytest.raises(
            (psycopg.errors.InsufficientPrivilege, psycopg.errors.ReadOnlySqlTransaction)
        ):
            conn.execute(statement)
        conn.rollback()
        # The session's read-only default is a second wall, not the only one: without it the
        # grants still refuse.
        conn.autocommit = True  # each statement its own transaction, under the new default
        conn.execute("set default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """A scratch warehouse with the roles script applied and a lake part loaded by the
    pipeline's role: (database, pipeline role, a reader's login role)."""
    suffix = uuid.uuid4().hex[:8]
    pipeline, reader = f"aios_pipeline_{suffix}", f"aios_wh_reader_{suffix}"
    analyst = f"aios_analyst_{suffix}"
    try:
        with scratch("database", "warehouse") as database:
            with psycopg.connect(f"{SERVER}/{database}", autocommit=True) as admin:
                admin.execute(
                    _render(
                        WAREHOUSE_SCRIPT.read_text(),
                        pipeline_role=pipeline,
                        reader_role=reader,
                        DBNAME=database,
                    )
                )
                admin.execute(f'create role "{analyst}" login in role "{reader}"')
            part = tmp_path / "raw_emails" / "ingest_date=2026-11-10" / "b1.parquet"
            part.parent.mkdir(parents=True)
            pq.write_table(pa.table({"email_id": ["E1", "E2"], "subject": ["a", "b"]}), part)
            as_pipeline = WarehouseResource(
                duckdb_path="", data_dir="", dbt_target="postgres",
                pg_user=pipeline, pg_database=database,
            )  # fmt: skip
            with as_pipeline.connect_postgres() as conn:
                assert load_lake(conn, tmp_path, ["raw_emails"]).rows_loaded == 2
                with conn.cursor() as cur:  # what dbt does in its schema
                    cur.execute("create table features.email_features as select 1 as x")
                conn.commit()
            yield database, pipeline, analyst
    finally:
        with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
            for role in (analyst, pipeline, reader):
                admin.execute(f'drop role if exists "{role}"')


def test_a_reader_reads_what_the_pipeline_loaded(warehouse: tuple[str, str, str]) -> None:
    database, _, analyst = warehouse
    with psycopg.connect(f"{SERVER.replace('postgres@', analyst + '@')}/{database}") as conn:
        assert conn.execute("select count(*) from lake.raw_emails").fetchone() == (2,)
        assert conn.execute("select x from features.email_features").fetchone() == (1,)


@pytest.mark.parametrize(
    "statement",
    [
        "insert into lake.raw_emails (email_id) values ('E3')",
        "update lake.raw_emails set subject = 'x'",
        "delete from lake.raw_emails",
        "truncate features.email_features",
        "drop table features.email_features",
        "delete from lake._lake_parts",
        "create table features.stolen (x int)",
        "create table public.stolen (x int)",
        "create temporary table scratch (x int)",
    ],
)
def test_only_the_pipeline_writes_the_warehouse(
    warehouse: tuple[str, str, str], statement: str
) -> None:
    database, _, analyst = warehouse
    dsn = f"{SERVER.replace('postgres@', analyst + '@')}/{database}"
    with psycopg.connect(dsn) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
