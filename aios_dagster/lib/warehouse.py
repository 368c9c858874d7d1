"""The analytical warehouse dbt builds and the Python assets read: DuckDB embedded, Postgres in
production (``dbt_target``).

Readers write one SQL for both: portable SQL with ``?`` placeholders (Postgres gets ``$1``,
``$2``, ...), tables unqualified (Postgres connections search the dbt ``features`` schema).
Results come back as Arrow either way (ADBC for Postgres), without the driver's per-field
type metadata and with times zoned as ``UTC``, so a model scored from one warehouse sees the
same columns as from the other.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

WAREHOUSES = ("duckdb", "postgres")
FEATURES_SCHEMA = "features"  # where dbt builds on Postgres (profiles.yml)
_PLACEHOLDER = re.compile(r"\?")


class WarehouseResource(dg.ConfigurableResource):
    """The analytical warehouse dbt builds (DuckDB file in the embedded profile)."""

    duckdb_path: str
    data_dir: str
    dbt_target: str = "duckdb"
    pg_host: str = "127.0.0.1"
    pg_port: int = 5432
    pg_user: str = "postgres"
    pg_password: str = ""
    pg_database: str = "aios"

    @property
    def is_postgres(self) -> bool:
        if self.dbt_target not in WAREHOUSES:
            raise ValueError(f"unknown warehouse {self.dbt_target!r}: one of {WAREHOUSES}")
        return self.dbt_target == "postgres"

    def connect(self, *, read_only: bool = True) -> Any:
        """DuckDB: read-only by default (many readers may share the file; only dbt writes it).
        Postgres: an ADBC connection whose search path starts at the dbt schema."""
        if self.is_postgres:
            return self.connect_postgres(search_path=f"{FEATURES_SCHEMA},public")
        import duckdb

        return duckdb.connect(self.duckdb_path, read_only=read_only)

    def connect_postgres(self, *, search_path: str | None = None) -> Any:
        import adbc_driver_postgresql.dbapi as pg
        from psycopg.conninfo import make_conninfo

        options = {"options": f"-csearch_path={search_path}"} if search_path else {}
        conninfo = make_conninfo(
            host=self.pg_host,
            port=self.pg_port,
            user=self.pg_user,
            password=self.pg_password or None,
            dbname=self.pg_database,
            connect_timeout=10,
            **options,
        )
        return pg.connect(conninfo)

    def query_arrow(self, sql: str, params: list | None = None) -> pa.Table:
        if self.is_postgres:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(_numbered(sql), params or None)
                return normalized(cur.fetch_arrow_table())
        with self.connect() as conn:
            return normalized(conn.sql(sql, params=params or None).to_arrow_table())

    def query_batches(
        self, sql: str, params: list | None = None, *, batch_rows: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream a query's rows in Arrow batches of at most ``batch_rows``.

        Memory stays flat however large the result: scoring a busy day (or a bank ten times our
        size) holds one batch of features, not the day.
        On DuckDB the rows are first spooled to a temporary Parquet file and the file closed,
        so the (slow) consumer never holds the warehouse open: dbt in a concurrent micro-batch
        run needs to write it. Postgres streams from the server (its readers block no writer).
        """
        if self.is_postgres:
            with self.connect() as conn, conn.cursor() as cur:
                cur.execute(_numbered(sql), params or None)
                reader = cur.fetch_record_batch()
                schema = _plain_schema(reader.schema)
                for batch in reader:
                    for start in range(0, batch.num_rows, batch_rows):
                        part = batch.slice(start, batch_rows)
                        yield pa.RecordBatch.from_arrays(part.columns, schema=schema)
            return
        with tempfile.TemporaryDirectory(prefix="aios_query_") as tmp:
            spool = Path(tmp) / "rows.parquet"
            with self.connect() as conn:
                reader = conn.sql(sql, params=params or None).to_arrow_reader(batch_rows)
                with pq.ParquetWriter(spool, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            for batch in pq.ParquetFile(spool).iter_batches(batch_size=batch_rows):
                yield pa.RecordBatch.from_arrays(batch.columns, schema=_plain_schema(batch.schema))

    def dbt_vars(self) -> dict[str, Any]:
        """What the dbt profile needs besides the password (which stays in the environment)."""
        if not self.is_postgres:
            return {}
        return {
            "pg_host": self.pg_host,
            "pg_port": self.pg_port,
            "pg_user": self.pg_user,
            "pg_database": self.pg_database,
        }


def _numbered(sql: str) -> str:
    """``?`` placeholders as Postgres numbers them (no reader puts a ``?`` in a literal)."""
    count = iter(range(1, 1 << 16))
    return _PLACEHOLDER.sub(lambda _: f"${next(count)}", sql)


def _plain_type(kind: pa.DataType) -> pa.DataType:
    if pa.types.is_list(kind):
        return pa.list_(_plain_type(kind.value_type))
    if pa.types.is_timestamp(kind) and kind.tz:
        return pa.timestamp(kind.unit, tz="UTC")  # DuckDB says Etc/UTC: the same instants
    return kind


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, _plain_type(f.type), f.nullable) for f in schema])


def normalized(table: pa.Table) -> pa.Table:
    """Without ADBC's ``POSTGRESQL:type`` field metadata, times zoned as ``UTC``."""
    return table.cast(_plain_schema(table.schema))
