"""The ``files`` connector kind: a drop folder of CSV, JSON lines or Parquet files.

The folder is a local path or any fsspec URL (``memory://drop``, ``file:///srv/drop``,
``s3://bucket/prefix``). Two concerns are kept apart on purpose:

* *Which files to read* (``files.listing``: ``FileListing``, ``list_new_files``,
  ``mark_ingested``) is independent of the file format, so the mailbox (``.eml``) connector
  reuses it.
* *How to turn one file into rows* (this module's ``FilesReader``) streams: CSV through
  pyarrow's streaming reader (``files.csv_reader``), JSON lines line by line
  (``files.jsonl_reader``), Parquet by record batches (``files.parquet_reader``), all cut into
  batches by ``files.batching``. Memory is bounded by ``batch_rows`` and the CSV block size (for
  Parquet: one row group), never by the size of the file.

Bad input never crashes the run with a raw pyarrow trace and never silently drops good rows:

* an empty file (0 bytes, header only, blank lines only) gives a ``Reject`` with rule
  ``empty_file``; the file counts as ingested;
* a file that is not text in the configured encoding gives a ``Reject`` with rule ``binary_file``
  (a NUL byte) or ``undecodable`` naming the byte offset and line. When the rows before the bad
  spot fit in one batch (the usual drop, or a binary file) that is the whole file and no row of it
  lands. Deeper into a large file the bad spot can only be seen when the reader gets there: the
  rows before it land and one reject covers the rest of the file (re-dropping the fixed file
  re-reads it completely; dedup by id makes that safe). The same holds for a broken compressed
  stream and for a CSV row longer than ``block_size_bytes``;
* a CSV row with too few or too many fields gives a ``Reject`` with rule ``column_count`` and the
  raw row text; the other rows continue. A CSV header with extra or missing columns compared to
  other files is passed through as read (columns are named from each file's header) so the runtime
  can report the schema drift by name;
* a JSON line that is not valid JSON or not an object gives ``not_json`` / ``not_an_object``;
* anything else the parser cannot read (a corrupt Parquet footer, a broken gzip stream) gives
  ``unparseable`` with the parser's message.

Storage failures are not data problems: ``TransientSourceError`` (retry later, the cursor is not
advanced past the file) or ``PermanentSourceError`` (e.g. permission denied).

CSV and JSON-lines values arrive as strings so a bad value becomes a contract failure on that
record instead of a type error for the whole file. Parquet keeps its own column types because
the file declares them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import fsspec.utils
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aios_dagster.lib.connectors.files.batching import Batcher, Piece
from aios_dagster.lib.connectors.files.csv_reader import read_csv
from aios_dagster.lib.connectors.files.jsonl_reader import read_jsonl
from aios_dagster.lib.connectors.files.listing import (
    PARTIAL_SUFFIXES,
    FileInfo,
    FileListing,
    is_new,
    is_partial_name,
    list_files,
    list_new_files,
    mark_ingested,
    seen_files,
)
from aios_dagster.lib.connectors.files.parquet_reader import read_parquet
from aios_dagster.lib.connectors.files.prefetch import prefetched
from aios_dagster.lib.connectors.files.storage import StorageError
from aios_dagster.lib.connectors.files.text_stream import BadInput, TextStream
from aios_dagster.lib.connectors.source import (
    Cursor,
    LineRefs,
    PermanentSourceError,
    SourceBatch,
    TransientSourceError,
)

# The listing names stay importable from here, where file-based kinds have always found them.
__all__ = [
    "PARTIAL_SUFFIXES",
    "FileInfo",
    "FileListing",
    "FilesReader",
    "FilesSourceConfig",
    "is_new",
    "is_partial_name",
    "list_files",
    "list_new_files",
    "mark_ingested",
    "seen_files",
]

log = logging.getLogger(__name__)

FileFormat = Literal["csv", "jsonl", "parquet"]

_EXTENSION_FORMATS: dict[str, FileFormat] = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".parq": "parquet",
    ".pq": "parquet",
}


class FilesSourceConfig(BaseModel):
    """A drop folder: where it is, which files, and how to read them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="Local path or fsspec URL (memory://drop, file:///..., s3://...)")
    pattern: str = Field("*", description="Glob relative to the folder; '**/*.csv' recurses")
    format: Literal["csv", "jsonl", "parquet", "auto"] = Field(
        "auto",
        description="'auto' picks by extension: .csv/.tsv/.txt, .jsonl/.ndjson/.json, .parquet",
    )
    encoding: str = Field("utf-8", description="Text encoding of CSV and JSON-lines files")
    delimiter: str | None = Field(
        None, description="CSV field separator; default ',' (tab for .tsv)"
    )
    batch_rows: int = Field(100_000, ge=1, description="Rows per SourceBatch (bounds memory)")
    block_size_bytes: int = Field(
        4 << 20, ge=1 << 12, description="CSV streaming block; a single row must fit in one block"
    )
    min_age_s: float = Field(0.0, ge=0, description="Skip files modified in the last N seconds")
    max_files_per_run: int | None = Field(None, ge=1, description="Cap on files read per run")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to fsspec (endpoint, anon...); never logged"
    )

    @field_validator("encoding")
    @classmethod
    def _known_text_encoding(cls, value: str) -> str:
        try:
            "a".encode(value)  # LookupError for unknown and non-text codecs (rot13)
        except LookupError as exc:
            raise ValueError(f"unknown text encoding {value!r}") from exc
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 1 or value in '\r\n"'):
            raise ValueError("delimiter must be one character other than a quote or newline")
        return value

    @field_validator("pattern")
    @classmethod
    def _relative_glob(cls, value: str) -> str:
        if not value or value.startswith("/") or ".." in value.split("/"):
            raise ValueError("pattern must be a glob relative to the folder, without '..'")
        return value


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class FilesReader:
    """``SourceReader`` for a drop folder: each file version is read once, in path order.

    Each ``SourceBatch`` is a slice of one file. ``batch_id`` is
    ``f"{sha1(rel_path + NUL + fingerprint)[:16]}-{block_no:05d}"``; ``cursor`` adds the file to
    ``{"files": {rel_path: fingerprint}}`` only on the file's last batch, so a crash mid-file
    re-reads that file from its start with the same batch ids (the runtime rewrites the same
    parts). ``row_refs`` are ``"<rel_path>:line <n>"`` for CSV and JSON lines (physical lines;
    see ``_CsvLines`` for the CSV caveat) and ``"<rel_path>:row <n>"`` for Parquet.
    """

    def __init__(self, config: FilesSourceConfig, *, clock: Callable[[], float] = time.time):
        self.config = config
        self.listing = FileListing.from_url(
            config.url,
            config.pattern,
            storage_options=config.storage_options,
            min_age_s=config.min_age_s,
            max_files=config.max_files_per_run,
        )
        self.listing.clock = clock

    def describe(self) -> str:
        c = self.config
        return f"files {_redact(c.url)} (pattern {c.pattern!r}, format {c.format})"

    def has_new(self, cursor: Cursor) -> bool:
        """Sensor probe. A missing local folder is "nothing new" (with a warning) rather than an
        error every minute before the first delivery creates it; a run still fails on it."""
        if self.listing.folder_missing():
            log.warning("%s: drop folder does not exist (yet)", self.listing.source)
            return False
        return bool(self.listing.new_files(cursor))

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        """Every new file's batches; the next batch is read while the current one lands."""
        return prefetched(self._batches(cursor), name=f"read {self.listing.source}")

    def _batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        current: Cursor = {**(cursor or {}), "files": dict(seen_files(cursor))}
        for file in self.listing.new_files(cursor):
            done = mark_ingested(current, file)
            held: Piece | None = None
            block_no = 0
            vanished = False
            try:
                for piece in self._pieces(file):
                    if held is not None:
                        yield self._batch(file, block_no, held, current)
                        block_no += 1
                    held = piece
            except StorageError as exc:
                original = exc.original
                reason = f"reading failed: {original}"
                if isinstance(original, PermissionError):
                    raise PermanentSourceError(file.url, file.rel_path, reason) from exc
                if not isinstance(original, FileNotFoundError):
                    # The cursor has not passed this file: the next run reads it from its start.
                    raise TransientSourceError(file.url, file.rel_path, reason) from exc
                # Moved away between listing and reading: not ingested, read if it comes back.
                log.warning("%s disappeared while being read; skipped", file.url)
                vanished = True
            if held is not None:
                yield self._batch(file, block_no, held, current if vanished else done)
            if not vanished:
                current = done

    def _batch(self, file: FileInfo, block_no: int, piece: Piece, cursor: Cursor) -> SourceBatch:
        word = "row" if self._format(file) == "parquet" else "line"
        prefix = f"{file.rel_path}:{word} "
        return SourceBatch(
            table=piece.table,
            batch_id=file.batch_id(block_no),
            source=file.url,
            cursor=cursor,
            rejects=piece.rejects,
            row_refs=LineRefs(prefix, piece.lines),
        )

    def _format(self, file: FileInfo) -> FileFormat | None:
        if self.config.format != "auto":
            return self.config.format
        name = file.rel_path.lower()
        if fsspec.utils.infer_compression(name):
            name = name.rsplit(".", 1)[0]
        return _EXTENSION_FORMATS.get(Path(name).suffix)

    def _pieces(self, file: FileInfo) -> Iterator[Piece]:
        fmt = self._format(file)
        batcher = Batcher(self.config.batch_rows, file.rel_path)
        if fmt is None:
            problem = BadInput(
                "unknown_format",
                f"cannot tell the format of {file.rel_path!r} from its extension; "
                "set `format` or narrow `pattern`",
            )
            yield from batcher.abort(problem)
            return
        if file.size == 0:
            yield from batcher.finish("0 bytes")
            return
        read = {"csv": self._csv, "jsonl": self._jsonl, "parquet": self._parquet}[fmt]
        try:
            yield from read(file, batcher)
        except BadInput as problem:
            yield from batcher.abort(problem)
        except (pa.ArrowException, OSError) as exc:
            # Storage failures arrive as StorageError, so an OSError here is pyarrow reporting
            # content it cannot parse (ArrowIOError is not an ArrowException).
            message = str(exc)
            if "straddl" in message:
                message = (
                    f"a row is longer than block_size_bytes ({self.config.block_size_bytes}): "
                    "raise it and drop the file again"
                )
            yield from batcher.abort(BadInput("unparseable", message))

    def _text(self, file: FileInfo, on_blank: Callable[[int], None] | None = None) -> TextStream:
        compression = fsspec.utils.infer_compression(file.rel_path)
        return TextStream(
            self.listing.open(file),
            self.config.encoding,
            decompress=compression,
            on_blank_line=on_blank,
        )

    def _csv(self, file: FileInfo, batcher: Batcher) -> Iterator[Piece]:
        delimiter = self.config.delimiter
        if delimiter is None:
            delimiter = "\t" if ".tsv" in file.rel_path.lower() else ","
        return read_csv(
            lambda on_blank: self._text(file, on_blank),
            file.rel_path,
            batcher,
            delimiter=delimiter,
            block_size=self.config.block_size_bytes,
        )

    def _jsonl(self, file: FileInfo, batcher: Batcher) -> Iterator[Piece]:
        return read_jsonl(
            self._text(file), file.rel_path, batcher, batch_rows=self.config.batch_rows
        )

    def _parquet(self, file: FileInfo, batcher: Batcher) -> Iterator[Piece]:
        return read_parquet(self.listing.open(file), batcher, batch_rows=self.config.batch_rows)
