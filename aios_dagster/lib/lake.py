"""The columnar lake: Parquet datasets written atomically so readers never see half a file.

A dataset is a folder of Parquet files (``<root>/<dataset>/<part>.parquet``); dbt reads the
folder with a glob. Writing a part replaces it whole (temp file + rename), which is what makes a
re-run of the same batch idempotent instead of appending duplicates.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq

from aios_dagster.lib.parquet_encoding import dictionary_columns


class LakeResource(dg.ConfigurableResource):
    """Local-folder lake (embedded profile); production points ``root`` at mounted storage."""

    root: str

    def dataset_dir(self, dataset: str) -> Path:
        return Path(self.root) / dataset

    def part_path(self, dataset: str, part: str = "data") -> Path:
        return self.dataset_dir(dataset) / f"{part}.parquet"

    def write(self, dataset: str, table: pa.Table, part: str = "data") -> Path:
        """Replace one part of a dataset atomically and return its path."""
        target = self.part_path(dataset, part)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        pq.write_table(table, tmp, compression="zstd", use_dictionary=dictionary_columns(table))
        tmp.replace(target)
        return target

    @contextlib.contextmanager
    def part_writer(self, dataset: str, part: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
        """Write one part batch by batch; it appears (atomically) only if the block succeeds."""
        target = self.part_path(dataset, part)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                yield writer
            tmp.replace(target)
        finally:
            tmp.unlink(missing_ok=True)

    def parts(self, dataset: str, prefix: str = "") -> list[Path]:
        """The dataset's part files (in sub-folders too) whose name starts with ``prefix``.

        Sorted by path, so ``ingest_date=...`` folders come out oldest first.
        """
        return sorted(self.dataset_dir(dataset).glob(f"**/{prefix}*.parquet"))

    def read(
        self,
        dataset: str,
        part: str | None = None,
        *,
        prefix: str = "",
        columns: list[str] | None = None,
    ) -> pa.Table:
        """Read one part, or every part whose name starts with ``prefix`` (default: all)."""
        if part is not None:
            return pq.read_table(self.part_path(dataset, part), columns=columns)
        parts = self.parts(dataset, prefix)
        if not parts:
            raise FileNotFoundError(
                f"lake dataset {dataset!r} has no parts{f' named {prefix}*' if prefix else ''} "
                f"under {self.root}"
            )
        tables = [pq.read_table(p, columns=columns) for p in parts]
        return pa.concat_tables(tables, promote_options="default")

    def remove_parts(self, dataset: str, prefix: str, *, keep: str | None = None) -> list[str]:
        """Delete the parts whose name starts with ``prefix`` (except ``keep``); return them."""
        removed = []
        for path in self.parts(dataset, prefix):
            if path.stem != keep:
                path.unlink()
                removed.append(path.stem)
        return removed

    def remove_part(self, dataset: str, part: str) -> bool:
        """Delete one part if it exists (a re-landed batch that now has no rows there)."""
        path = self.part_path(dataset, part)
        if path.exists():
            path.unlink()
            return True
        return False

    def remove_stale_copies(self, dataset: str, part: str) -> list[Path]:
        """Delete copies of ``part``'s file name in *other* sub-folders.

        A batch re-landed on a later ingest date must replace, not duplicate, its earlier copy.
        """
        keep = self.part_path(dataset, part)
        stale = [p for p in self.dataset_dir(dataset).glob(f"**/{keep.name}") if p != keep]
        for path in stale:
            path.unlink()
        return stale

    def exists(self, dataset: str, part: str = "data") -> bool:
        return self.part_path(dataset, part).exists()
