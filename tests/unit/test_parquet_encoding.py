"""The lake writes nearly-unique columns plain and repetitive ones with a dictionary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.parquet_encoding import dictionary_columns


def _encodings(path: Path) -> dict[str, set[str]]:
    meta = pq.ParquetFile(path).metadata
    out: dict[str, set[str]] = {}
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            out.setdefault(chunk.path_in_schema, set()).update(chunk.encodings)
            if chunk.dictionary_page_offset is not None:
                out[chunk.path_in_schema].add("has_dictionary_page")
    return out


def _table(rows: int = 50_000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "txn_id": [f"T{i:09d}" for i in range(rows)],
            "booked_at": pa.array(
                np.arange(rows, dtype=np.int64) * 1_000_003, pa.timestamp("us", tz="UTC")
            ),
            "currency": rng.choice(["GBP", "EUR", "USD"], rows),
            "amount": np.round(rng.uniform(0, 50, rows), 0),  # few distinct values
            "note": pa.array([None] * rows, pa.string()),
        }
    )


def test_unique_columns_are_written_plain_and_read_back_the_same(tmp_path: Path) -> None:
    table = _table()
    lake = LakeResource(root=str(tmp_path))
    path = lake.write("raw_txn", table)

    encodings = _encodings(path)
    for unique in ("txn_id", "booked_at"):
        assert "has_dictionary_page" not in encodings[unique], encodings[unique]
    for repetitive in ("currency", "amount"):
        assert "has_dictionary_page" in encodings[repetitive], encodings[repetitive]
    assert pq.read_table(path).equals(table)

    # The point of it: a smaller file than the writer's default gives.
    default = tmp_path / "default.parquet"
    pq.write_table(table, default, compression="zstd")
    assert path.stat().st_size < default.stat().st_size


def test_small_null_and_nested_tables_keep_the_default() -> None:
    assert dictionary_columns(_table(rows=100)) is True  # too few values to judge
    assert dictionary_columns(_table().select(["currency", "note"])) is True
    nested = _table().append_column("tags", pa.array([["a"]] * 50_000))
    assert dictionary_columns(nested) is True  # leaf paths are not top-level names
