"""Least privilege on the bank replica: the transactions connector's role reads, nothing more.

``deploy/postgres/bank_reader.sql`` is applied to a scratch database of the machine's real
PostgreSQL; the connector lands the bank's rows as that role, and every kind of write the role
could attempt is refused, by its grants and again by its read-only sessions.
"""

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from aios_dagster.lib.connectors.sql_source import SqlReader, SqlSourceConfig
from tests.postgres import SERVER, scratch

SCRIPT = Path(__file__).parents[2] / "deploy" / "postgres" / "bank_reader.sql"


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
