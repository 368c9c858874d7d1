"""The analytical warehouse dbt builds and the Python assets read (DuckDB when embedded)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pyarrow as pa


class WarehouseResource(dg.ConfigurableResource):
    """The analytical warehouse dbt builds (DuckDB file in the embedded profile)."""

    duckdb_path: str
    data_dir: str
    dbt_target: str = "duckdb"

    def connect(self, *, read_only: bool = True) -> Any:
        """Read-only by default: many readers may share the file; only dbt writes it."""
        import duckdb

        return duckdb.connect(self.duckdb_path, read_only=read_only)

    def query_arrow(self, sql: str, params: list | None = None) -> pa.Table:
        with self.connect() as conn:
            return conn.sql(sql, params=params or None).to_arrow_table()

    def query_batches(
        self, sql: str, params: list | None = None, *, batch_rows: int = 50_000
    ) -> Iterator[pa.RecordBatch]:
        """Stream a query's rows in Arrow batches of at most ``batch_rows``.

        Memory stays flat however large the result: scoring a busy day (or a bank ten times our
        size) holds one batch of features, not the day.
        """
        with self.connect() as conn:
            reader = conn.sql(sql, params=params or None).to_arrow_reader(batch_rows)
            yield from reader
