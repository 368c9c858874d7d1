"""The analytical warehouse dbt builds and the Python assets read (DuckDB when embedded)."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq


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
        The rows are first spooled to a temporary Parquet file and the DuckDB file closed, so
        the (slow) consumer never holds the warehouse open: dbt in a concurrent micro-batch run
        needs to write it.
        """
        with tempfile.TemporaryDirectory(prefix="aios_query_") as tmp:
            spool = Path(tmp) / "rows.parquet"
            with self.connect() as conn:
                reader = conn.sql(sql, params=params or None).to_arrow_reader(batch_rows)
                with pq.ParquetWriter(spool, reader.schema) as writer:
                    for batch in reader:
                        writer.write_batch(batch)
            yield from pq.ParquetFile(spool).iter_batches(batch_size=batch_rows)
