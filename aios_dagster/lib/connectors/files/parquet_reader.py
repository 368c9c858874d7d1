"""Parquet files: record batches of one row group at a time, in the file's own column types."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import IO

import pyarrow.parquet as pq

from aios_dagster.lib.connectors.files.batching import Batcher, Piece


def read_parquet(raw: IO[bytes], batcher: Batcher, *, batch_rows: int) -> Iterator[Piece]:
    """Stream ``raw`` in ``batch_rows`` pieces; row references count from 1."""
    with contextlib.closing(raw):
        parquet = pq.ParquetFile(raw)
        batcher.schema = parquet.schema_arrow
        row = 1
        for record_batch in parquet.iter_batches(batch_size=batch_rows):
            count = record_batch.num_rows
            yield from batcher.add(record_batch, list(range(row, row + count)))
            row += count
    yield from batcher.finish("0 rows")
