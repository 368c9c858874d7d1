"""The ``files`` connector kind: a drop folder of CSV, JSON lines or Parquet files.

The folder is a local path or any fsspec URL (``memory://drop``, ``file:///srv/drop``,
``s3://bucket/prefix``). Two concerns are kept apart on purpose:

* *Which files to read* (``FileListing``, ``list_new_files``, ``mark_ingested``) is independent of
  the file format, so the mailbox (``.eml``) connector reuses it. The cursor remembers every
  ingested file with a fingerprint (size plus modification time or ETag), so a file is read once,
  a replaced file is read again (dedup by record id happens downstream), and a file that is still
  being written can be held back with ``min_age_s``.
* *How to turn one file into rows* (``FilesReader``) streams: CSV through pyarrow's streaming
  reader, JSON lines line by line, Parquet by record batches. Memory is bounded by ``batch_rows``
  and the CSV block size (for Parquet: one row group), never by the size of the file.

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

CSV and JSON-lines values arrive as strings (JSON numbers keep their original text, nested values
are re-serialised as JSON) so a bad value becomes a contract failure on that record instead of a
type error for the whole file, exactly like the CRM export reader always did. Parquet keeps its
own column types because the file declares them.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import io
import json
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal, TypeVar
from urllib.parse import urlsplit, urlunsplit

import fsspec
import fsspec.compression
import fsspec.utils
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    Reject,
    SourceBatch,
    TransientSourceError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

FileFormat = Literal["csv", "jsonl", "parquet"]

#: Names that writers use for files they have not finished yet (or hidden bookkeeping files).
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload")

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

# Modification-time and content-identity keys that fsspec implementations put in ``info()``.
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "content_md5")

_TEXT_CHUNK_BYTES = 1 << 20
_BINARY_SNIFF_BYTES = 8192
_LISTING_ATTEMPTS = 3


# --------------------------------------------------------------------------------------------
# Which files to read: reusable by every file-based connector kind (files, mailbox)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileInfo:
    """One file in a drop folder, as listed (nothing has been read yet)."""

    path: str  # as the filesystem names it, for ``fs.open``
    rel_path: str  # relative to the folder, '/'-separated: the cursor key and the name users see
    size: int
    mtime: float | None  # epoch seconds; None where the store does not say
    fingerprint: str  # "size:mtime_ns" or "size:etag": changes when the file is replaced
    url: str  # protocol-qualified, for ``SourceBatch.source`` and messages

    def batch_id(self, block_no: int) -> str:
        """Deterministic id of the ``block_no``-th batch of this version of this file.

        Re-reading the same file version after a crash gives the same ids, so the runtime
        rewrites the same lake parts instead of duplicating rows; a replaced file (new
        fingerprint) gets new ids.
        """
        key = f"{self.rel_path}\0{self.fingerprint}".encode()
        digest = hashlib.sha1(key, usedforsecurity=False).hexdigest()
        return f"{digest[:16]}-{block_no:05d}"


def seen_files(cursor: Cursor | None) -> dict[str, str]:
    """The ``{rel_path: fingerprint}`` map of a files cursor (empty for a first run)."""
    if not cursor:
        return {}
    files = cursor.get("files", {})
    if not isinstance(files, dict):
        raise PermanentSourceError(
            "files cursor", None, f"cursor['files'] must be a mapping, got {type(files).__name__}"
        )
    return files


def is_new(file: FileInfo, cursor: Cursor | None) -> bool:
    """A file is new when its path was never ingested or its fingerprint changed since."""
    return seen_files(cursor).get(file.rel_path) != file.fingerprint


def mark_ingested(cursor: Cursor | None, *files: FileInfo) -> Cursor:
    """A copy of ``cursor`` that also records ``files`` as ingested (other keys are kept).

    Entries are never pruned: a name removed from the folder and dropped again with the same
    size and mtime is not re-read. The cost is one short entry per file ever ingested.
    """
    merged = dict(seen_files(cursor))
    for file in files:
        merged[file.rel_path] = file.fingerprint
    return {**(cursor or {}), "files": merged}


def is_partial_name(rel_path: str) -> bool:
    """Hidden, bookkeeping or still-being-written names that a reader must not touch.

    Any path component starting with '.' or '_' (``.DS_Store``, ``_SUCCESS``, ``_temporary/``)
    and names ending like a partial download or temp file (``.tmp``, ``.part``...).
    """
    parts = rel_path.split("/")
    if any(part.startswith((".", "_")) for part in parts):
        return True
    return parts[-1].lower().endswith(PARTIAL_SUFFIXES)


def _to_epoch(value: Any) -> float | None:
    """fsspec stores disagree on how they report times: datetime, epoch number, or ISO text."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return None


def _file_info(
    fs: fsspec.AbstractFileSystem, path: str, rel: str, info: Mapping[str, Any]
) -> FileInfo:
    size = int(info.get("size") or 0)
    etag: str | None = None
    mtime_ns: int | None = None
    if isinstance(fs, LocalFileSystem):
        # Nanosecond mtime from the OS: a float would lose the resolution that tells a file
        # rewritten within the same second apart.
        stat = Path(path).stat()
        size = stat.st_size
        mtime_ns = stat.st_mtime_ns
        mtime: float | None = mtime_ns / 1e9
    else:
        mtime = next(
            (t for t in (_to_epoch(info.get(k)) for k in _MTIME_KEYS) if t is not None), None
        )
        if mtime is None:
            with contextlib.suppress(Exception):
                mtime = _to_epoch(fs.modified(path))
        etag = next((str(info[k]) for k in _ETAG_KEYS if info.get(k)), None)
        if mtime is not None:
            mtime_ns = round(mtime * 1e9)
    # An object store's ETag changes with the content; otherwise the mtime does. Where a store
    # reports neither, only a size change marks a replaced file.
    stamp = etag if etag is not None else (str(mtime_ns) if mtime_ns is not None else "?")
    return FileInfo(
        path=path,
        rel_path=rel,
        size=size,
        mtime=mtime,
        fingerprint=f"{size}:{stamp}",
        url=fs.unstrip_protocol(path),
    )


def _retrying(action: Callable[[], T], source: str, what: str) -> T:
    """Retry a storage call a few times with backoff; only then call the failure transient."""
    delay = 0.5
    for attempt in range(1, _LISTING_ATTEMPTS + 1):
        try:
            return action()
        except PermissionError as exc:
            raise PermanentSourceError(source, None, f"{what}: permission denied ({exc})") from exc
        except OSError as exc:
            if attempt == _LISTING_ATTEMPTS:
                raise TransientSourceError(
                    source, None, f"{what} failed {attempt} times: {exc}"
                ) from exc
            log.warning("%s: %s failed (%s), retrying in %.1fs", source, what, exc, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")  # pragma: no cover


def list_files(
    fs: fsspec.AbstractFileSystem,
    root: str,
    pattern: str = "*",
    *,
    min_age_s: float = 0.0,
    now: float | None = None,
) -> list[FileInfo]:
    """Files under ``root`` matching the glob ``pattern`` that are ready to read, sorted by path.

    ``pattern`` is relative to ``root`` (``*.csv`` for the folder itself, ``**/*.csv`` for
    subfolders too). Hidden, bookkeeping and partial names are skipped (``is_partial_name``), and
    so are files modified less than ``min_age_s`` seconds ago: a writer that does not rename into
    place atomically is still appending to them. A store that reports no modification time
    cannot be aged; its files are treated as ready.
    """
    root = root.rstrip("/")
    source = fs.unstrip_protocol(root)
    if isinstance(fs, LocalFileSystem) and not Path(root).is_dir():
        # On object stores an empty prefix simply has no files; a missing local folder is a typo
        # in the config that would otherwise read nothing forever.
        raise PermanentSourceError(source, None, "drop folder does not exist or is not a folder")
    with contextlib.suppress(Exception):
        fs.invalidate_cache(root)  # listings are cached by some stores (s3fs, gcsfs)
    found: dict[str, Mapping[str, Any]] = _retrying(
        lambda: fs.glob(f"{root}/{pattern}", detail=True), source, "listing the drop folder"
    )
    current = time.time() if now is None else now
    files: list[FileInfo] = []
    prefix = f"{root}/"
    for path, info in found.items():
        if info.get("type", "file") != "file" or not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        if is_partial_name(rel):
            continue
        try:
            file = _file_info(fs, path, rel, info)
        except FileNotFoundError:
            continue  # removed between listing and stat: not ours to read any more
        if min_age_s > 0 and file.mtime is not None and current - file.mtime < min_age_s:
            continue
        files.append(file)
    files.sort(key=lambda f: f.rel_path)
    return files


def list_new_files(
    fs: fsspec.AbstractFileSystem,
    root: str,
    pattern: str,
    cursor: Cursor | None,
    *,
    min_age_s: float = 0.0,
    max_files: int | None = None,
    now: float | None = None,
) -> list[FileInfo]:
    """Ready files that ``cursor`` has not seen in their current version, sorted by path."""
    seen = seen_files(cursor)
    new = [
        f
        for f in list_files(fs, root, pattern, min_age_s=min_age_s, now=now)
        if seen.get(f.rel_path) != f.fingerprint
    ]
    return new[:max_files] if max_files is not None else new


@dataclass
class FileListing:
    """A drop folder bound to its filesystem: list what is new, open a file, describe it.

    The kind-independent half of a file connector. A reader iterates ``new_files(cursor)``,
    reads each one, and hands out ``mark_ingested(cursor, file)`` with the file's last batch.
    """

    fs: fsspec.AbstractFileSystem
    root: str
    pattern: str = "*"
    min_age_s: float = 0.0
    max_files: int | None = None
    clock: Callable[[], float] = time.time

    @classmethod
    def from_url(
        cls,
        url: str,
        pattern: str = "*",
        *,
        storage_options: Mapping[str, Any] | None = None,
        min_age_s: float = 0.0,
        max_files: int | None = None,
    ) -> FileListing:
        fs, root = url_to_fs(url, **dict(storage_options or {}))
        return cls(fs, root.rstrip("/"), pattern, min_age_s=min_age_s, max_files=max_files)

    @property
    def source(self) -> str:
        return self.fs.unstrip_protocol(self.root)

    def folder_missing(self) -> bool:
        """A local folder that does not exist (object-store prefixes exist once files do)."""
        return isinstance(self.fs, LocalFileSystem) and not Path(self.root).is_dir()

    def files(self) -> list[FileInfo]:
        return list_files(
            self.fs, self.root, self.pattern, min_age_s=self.min_age_s, now=self.clock()
        )

    def new_files(self, cursor: Cursor | None) -> list[FileInfo]:
        return list_new_files(
            self.fs,
            self.root,
            self.pattern,
            cursor,
            min_age_s=self.min_age_s,
            max_files=self.max_files,
            now=self.clock(),
        )

    def open(self, file: FileInfo) -> IO[bytes]:
        """Open for binary reading; storage errors surface as ``StorageError`` (see there)."""
        try:
            raw = self.fs.open(file.path, "rb")
        except OSError as exc:
            raise StorageError(exc) from exc
        return _GuardedFile(raw)


class StorageError(Exception):
    """The filesystem failed while reading (not the content): wraps the original ``OSError``.

    Kept apart from ``OSError`` because pyarrow reports some content errors (a corrupt Parquet
    page) as ``OSError`` too, and those must be quarantined, not retried forever.
    """

    def __init__(self, original: OSError) -> None:
        super().__init__(str(original))
        self.original = original


class _GuardedFile(io.RawIOBase):
    """Re-raises the storage's ``OSError`` as ``StorageError``; otherwise a plain file."""

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self._raw = raw

    def _call(self, action: Callable[[], T]) -> T:
        try:
            return action()
        except OSError as exc:
            raise StorageError(exc) from exc

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(self._call(self._raw.seekable))

    def read(self, size: int | None = -1) -> bytes:
        return self._call(lambda: self._raw.read(-1 if size is None else size))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._call(lambda: self._raw.seek(offset, whence))

    def tell(self) -> int:
        return self._call(self._raw.tell)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._raw.close()
        super().close()


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Bytes to validated UTF-8 text: one place that knows encodings, binary files and line numbers
# --------------------------------------------------------------------------------------------


class _BadInput(Exception):
    """The content cannot be read further: becomes a ``Reject`` with ``rule``.

    ``good`` is the valid UTF-8 text of the current chunk before the bad spot, so the rows
    before it can still be read.
    """

    def __init__(self, rule: str, detail: str, line: int | None = None, good: bytes = b"") -> None:
        super().__init__(detail)
        self.rule = rule
        self.detail = detail
        self.line = line
        self.good = good


def _ascii_compatible(encoding: str) -> bool:
    """Newlines and NULs are single bytes in this encoding (not UTF-16/32)."""
    try:
        return "\n\0a,".encode(encoding) == b"\n\0a,"
    except UnicodeError:
        return False


_BLANK_LINE = re.compile(rb"\n(?=\r?\n)")
_UTF8_BOM = codecs.BOM_UTF8


class _TextStream(io.RawIOBase):
    """A read-only stream of validated UTF-8 that only ever hands out whole lines.

    Decoding here rather than inside pyarrow is what turns a wrong encoding or a binary file into
    a message with a byte offset and line number (pyarrow only says "invalid UTF8 data"), lets
    the JSON-lines reader share the same checks, and transcodes other encodings to UTF-8 in
    bounded chunks.

    When the content goes bad (a NUL byte, bytes invalid in the encoding, a broken compressed
    stream) the stream does not raise into the parser: it ends cleanly after the last complete
    line before the bad spot and keeps the problem in ``error``. Raising inside pyarrow would
    surface the error at a point that depends on its read-ahead threads; ending cleanly makes
    what is read before it depend on the bytes only, so a re-read yields the same batches.
    ``on_blank_line`` receives the physical number of each empty line, which the CSV reader
    needs because pyarrow does not count empty lines in its row numbers.
    """

    def __init__(
        self,
        raw: IO[bytes],
        encoding: str,
        *,
        decompress: str | None = None,
        on_blank_line: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__()
        self._file = raw
        self._raw: IO[bytes] = (
            fsspec.compression.compr[decompress](raw, mode="rb") if decompress else raw
        )
        self._encoding = codecs.lookup(encoding).name
        self._utf8 = self._encoding in {"utf-8", "utf-8-sig"}
        self._ascii = _ascii_compatible(encoding)
        self._decoder = codecs.getincrementaldecoder(encoding)("strict")
        self._on_blank = on_blank_line
        self.error: _BadInput | None = None
        self._buffer = b""
        self._pos = 0
        self._carry = b""  # the incomplete last line, handed out with the next chunk
        self._consumed = 0  # raw (decompressed) bytes read so far
        self._lines = 0  # newlines handed out so far
        self._tail = b""  # last two bytes handed out: blank lines across chunk boundaries
        self._first = True
        self._eof = False

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        parts: list[bytes] = []
        wanted = -1 if size is None else size
        got = 0
        while wanted < 0 or got < wanted:
            if self._pos >= len(self._buffer):
                if self._eof:
                    break
                self._fill()
                continue
            end = len(self._buffer) if wanted < 0 else self._pos + (wanted - got)
            piece = self._buffer[self._pos : end]
            self._pos += len(piece)
            got += len(piece)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._raw is not self._file:
                self._raw.close()
        with contextlib.suppress(Exception):
            self._file.close()
        super().close()

    def _fill(self) -> None:
        try:
            out = self._next_chunk()
        except _BadInput as problem:
            self.error, out, self._eof = problem, problem.good, True
        if self._first and out:
            self._first = False
            if out.startswith(_UTF8_BOM):
                out = out[len(_UTF8_BOM) :]
        whole = self._carry + out if self._carry else out
        if self._eof and self.error is None:
            emit, self._carry = whole, b""
        else:
            cut = whole.rfind(b"\n") + 1
            emit, self._carry = whole[:cut], (b"" if self.error else whole[cut:])
        if self._on_blank is not None and emit:
            self._find_blank_lines(emit)
        self._lines += emit.count(b"\n")
        self._tail = (self._tail + emit)[-2:]
        self._buffer, self._pos = emit, 0
        if self.error is not None:
            self.error.line = self._lines + 1  # the first line not handed out

    def _next_chunk(self) -> bytes:
        """The next chunk as valid UTF-8 (raises ``_BadInput`` carrying the good prefix)."""
        try:
            data = self._raw.read(_TEXT_CHUNK_BYTES)
        except StorageError:
            raise
        except (OSError, EOFError, ValueError) as exc:  # a broken compressed stream
            raise _BadInput(
                "unparseable",
                f"cannot decompress after byte {self._consumed} (line {self._lines + 1}): {exc}",
            ) from exc
        start = self._consumed
        self._consumed += len(data)
        final = not data
        self._eof = final
        pending = self._decoder.getstate()[0]
        whole = pending + data if pending else data
        base = start - len(pending)  # file offset of whole[0]
        nul = whole.find(b"\0") if self._ascii else -1
        if self._first and 0 <= nul < _BINARY_SNIFF_BYTES:
            problem = self._bad_spot("binary_file", whole, nul, base)
            problem.good = b""  # a binary file from its first bytes: no line of it is text
            raise problem
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as err:
            if 0 <= nul < err.start:
                raise self._bad_spot("binary_file", whole, nul, base) from err
            raise self._bad_spot("undecodable", whole, err.start, base, err.end) from err
        if nul >= 0:
            raise self._bad_spot("binary_file", whole, nul, base)
        if not self._ascii and "\0" in text:
            good = text[: text.index("\0")]
            line = self._lines + good.count("\n") + 1
            raise _BadInput(
                "binary_file", f"NUL character at line {line}: not a text file", good=good.encode()
            )
        if self._utf8:
            # Already valid UTF-8: hand out the bytes themselves, minus a split trailing char.
            keep = len(whole) - len(self._decoder.getstate()[0])
            return whole if keep == len(whole) else whole[:keep]
        return text.encode("utf-8")

    def _bad_spot(
        self, rule: str, whole: bytes, at: int, base: int, end: int | None = None
    ) -> _BadInput:
        """Describe the bad bytes at ``whole[at]`` (file offset ``base + at``) for a person."""
        good = whole[:at].decode(self._encoding, "replace")
        line = self._lines + good.count("\n") + 1
        line_start = whole.rfind(b"\n", 0, at) + 1
        context = whole[max(line_start, at - 40) : at + 40].split(b"\n")[0]
        if rule == "binary_file":
            detail = (
                f"NUL byte at byte offset {base + at} (line {line}): not a {self._encoding} "
                f"text file; first bytes {whole[:16]!r}"
            )
        else:
            detail = (
                f"not valid {self._encoding} at byte offset {base + at} (line {line}): "
                f"{whole[at : end or at + 1]!r} in {context!r}; if the file uses another "
                "encoding, set `encoding` (e.g. latin-1 or cp1252) and drop it again"
            )
        return _BadInput(rule, detail, line, good=good.encode("utf-8"))

    def _find_blank_lines(self, out: bytes) -> None:
        assert self._on_blank is not None
        tail = self._tail
        at_line_start = tail == b"" or tail.endswith(b"\n")
        after_cr = tail.endswith(b"\n\r") or tail == b"\r"
        if (at_line_start and out.startswith((b"\n", b"\r\n"))) or (
            after_cr and out.startswith(b"\n")
        ):
            self._on_blank(self._lines + 1)
        if b"\n\n" not in out and b"\n\r\n" not in out:
            return
        lines, last = self._lines, 0
        for match in _BLANK_LINE.finditer(out):
            lines += out.count(b"\n", last, match.start() + 1)
            last = match.start() + 1
            self._on_blank(lines + 1)


# --------------------------------------------------------------------------------------------
# Rows to batches
# --------------------------------------------------------------------------------------------


class _CsvLines:
    """Maps pyarrow's CSV record numbers to physical line numbers.

    pyarrow numbers records from 1 (the header) and skips empty lines; invalid rows keep their
    number but are not in the output. Empty lines are reported by ``_TextStream``. The physical
    line is exact unless a quoted value before it contains a newline (then it is the record
    count plus empty lines: still the right order, a few lines early). Old Mac '\\r'-only line
    endings are not counted as lines.
    """

    def __init__(self) -> None:
        self.blank: list[int] = []
        self.invalid: list[int] = []
        self._next_record = 2  # the first data record
        self._invalid_i = 0
        self._blank_j = 0
        self._reject_j = 0

    def _physical(self, record: int, j: int) -> tuple[int, int]:
        blank = self.blank
        while j < len(blank) and blank[j] <= record + j:
            j += 1
        return record + j, j

    def line_of(self, record: int) -> int:
        """Physical line of an invalid record (called in increasing record order)."""
        line, self._reject_j = self._physical(record, self._reject_j)
        return line

    def next_lines(self, count: int) -> list[int]:
        """Physical lines of the next ``count`` valid records."""
        out: list[int] = []
        record, invalid = self._next_record, self.invalid
        while len(out) < count:
            while self._invalid_i < len(invalid) and invalid[self._invalid_i] < record:
                self._invalid_i += 1
            if self._invalid_i < len(invalid) and invalid[self._invalid_i] == record:
                record += 1
                self._invalid_i += 1
                continue
            stop = invalid[self._invalid_i] if self._invalid_i < len(invalid) else record + count
            take = min(count - len(out), stop - record)
            while take:
                _, self._blank_j = self._physical(record, self._blank_j)
                j = self._blank_j
                limit = self.blank[j] - j if j < len(self.blank) else record + take
                run = min(take, limit - record)
                out.extend(range(record + j, record + j + run))
                record += run
                take -= run
        self._next_record = record
        return out


@dataclass
class _Piece:
    table: pa.Table
    lines: list[int]
    rejects: list[Reject] = field(default_factory=list)


class _Batcher:
    """Cuts one file's rows into ``batch_rows`` pieces and places each reject by its line.

    The cut points and reject placement depend only on the file and the config, so re-reading a
    file after a crash reproduces the same batches. One row is always held back until more rows
    or the end of the file arrive, so the last piece carries the file's trailing rejects.
    """

    def __init__(self, batch_rows: int, rel_path: str) -> None:
        self.batch_rows = batch_rows
        self.rel_path = rel_path
        self.emitted = 0
        self.schema: pa.Schema | None = None
        self._tables: list[pa.Table] = []
        self._lines: list[int] = []
        self._rows = 0
        self._rejects: list[tuple[int, Reject]] = []
        self._total_rows = 0
        self._total_rejects = 0
        self._last_line = 0  # line of the last row read so far

    def reject(self, line: int | None, reject: Reject) -> None:
        self._rejects.append((line if line is not None else 1 << 62, reject))
        self._total_rejects += 1

    def add(self, data: pa.Table | pa.RecordBatch, lines: list[int]) -> Iterator[_Piece]:
        table = pa.Table.from_batches([data]) if isinstance(data, pa.RecordBatch) else data
        self.schema = table.schema
        if table.num_rows:
            self._tables.append(table)
            self._lines.extend(lines)
            self._last_line = lines[-1] if lines else self._last_line
            self._rows += table.num_rows
            self._total_rows += table.num_rows
        while self._rows > self.batch_rows:
            yield self._cut(self.batch_rows, final=False)

    def _cut(self, count: int, *, final: bool) -> _Piece:
        tables = self._tables
        whole = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        piece, rest = whole.slice(0, count), whole.slice(count)
        self._tables = [rest] if rest.num_rows else []
        lines, self._lines = self._lines[:count], self._lines[count:]
        self._rows -= count
        if final:
            rejects, self._rejects = [r for _, r in sorted(self._rejects, key=_line_key)], []
        else:
            last = lines[-1] if lines else 0
            mine = [(n, r) for n, r in self._rejects if n <= last]
            self._rejects = [(n, r) for n, r in self._rejects if n > last]
            rejects = [r for _, r in sorted(mine, key=_line_key)]
        self.emitted += 1
        return _Piece(piece, lines, rejects)

    def _empty(self) -> pa.Table:
        return self.schema.empty_table() if self.schema is not None else pa.table({})

    def finish(self, empty: str = "no rows") -> Iterator[_Piece]:
        """The file's last piece: remaining rows and every reject not placed yet.

        A file without a single row or reject is reported as ``empty_file`` (``empty`` says how
        it was empty), so a user sees that it arrived and was read.
        """
        if self._total_rows == 0 and self._total_rejects == 0:
            self.reject(None, Reject(record=self.rel_path, rule="empty_file", value=empty))
        if self._rows:
            yield self._cut(self._rows, final=True)
        else:
            rejects = [r for _, r in sorted(self._rejects, key=_line_key)]
            self._rejects = []
            self.emitted += 1
            yield _Piece(self._empty(), [], rejects)

    def abort(self, problem: _BadInput) -> Iterator[_Piece]:
        """The rest of the file cannot be read (``problem.line`` is the first line not read).

        If the rows before the problem fit in one batch (no piece was cut yet: the usual small
        drop, or bad bytes from the start) the whole file is rejected and none of its rows land,
        so a fixed file dropped again lands exactly once. Otherwise the rows before the problem
        land and one reject covers the rest of the file. Either way the outcome depends only on
        the bytes and ``batch_rows``, so a re-read after a crash gives the same batches.
        """
        if self.emitted == 0:
            self._tables, self._lines, self._rows, self._rejects = [], [], 0, []
            self._total_rows = 0
            self.reject(None, Reject(record=self.rel_path, rule=problem.rule, value=problem.detail))
            self.schema = None
            yield from self.finish()
            return
        line = problem.line if problem.line is not None else self._last_line + 1
        where = f"line {line}"
        self.reject(
            line,
            Reject(
                record=f"{self.rel_path}:{where}",
                rule=problem.rule,
                value=f"{problem.detail}; the file was read up to that line, the rest was not",
            ),
        )
        yield from self.finish()


def _line_key(item: tuple[int, Reject]) -> int:
    return item[0]


class _Num(str):
    """A JSON number kept as its original text ("1.50" stays "1.50", as in a CSV)."""

    __slots__ = ()


def _json_dump(value: Any) -> str:
    if isinstance(value, _Num):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        items = ",".join(
            f"{json.dumps(k, ensure_ascii=False)}:{_json_dump(v)}" for k, v in value.items()
        )
        return "{" + items + "}"
    return "[" + ",".join(_json_dump(v) for v in value) + "]"


def _json_text(value: Any) -> str | None:
    """A top-level JSON value as the string a CSV cell would hold (null stays null)."""
    if value is None:
        return None
    if isinstance(value, str):
        return str(value)
    return _json_dump(value)


def _rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """String columns in first-seen key order; a key missing from a row is null there."""
    columns: dict[str, list[str | None]] = {}
    for i, row in enumerate(rows):
        for key, value in row.items():
            column = columns.get(key)
            if column is None:
                column = columns[key] = [None] * i
            column.append(_json_text(value))
        for column in columns.values():
            if len(column) <= i:
                column.append(None)
    return pa.table({k: pa.array(v, type=pa.string()) for k, v in columns.items()})


# --------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------


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
        current: Cursor = {**(cursor or {}), "files": dict(seen_files(cursor))}
        for file in self.listing.new_files(cursor):
            done = mark_ingested(current, file)
            held: _Piece | None = None
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

    def _batch(self, file: FileInfo, block_no: int, piece: _Piece, cursor: Cursor) -> SourceBatch:
        word = "row" if self._format(file) == "parquet" else "line"
        prefix = f"{file.rel_path}:{word} "
        return SourceBatch(
            table=piece.table,
            batch_id=file.batch_id(block_no),
            source=file.url,
            cursor=cursor,
            rejects=piece.rejects,
            row_refs=[f"{prefix}{n}" for n in piece.lines],
        )

    def _format(self, file: FileInfo) -> FileFormat | None:
        if self.config.format != "auto":
            return self.config.format
        name = file.rel_path.lower()
        if fsspec.utils.infer_compression(name):
            name = name.rsplit(".", 1)[0]
        return _EXTENSION_FORMATS.get(Path(name).suffix)

    def _pieces(self, file: FileInfo) -> Iterator[_Piece]:
        fmt = self._format(file)
        batcher = _Batcher(self.config.batch_rows, file.rel_path)
        if fmt is None:
            problem = _BadInput(
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
        except _BadInput as problem:
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
            yield from batcher.abort(_BadInput("unparseable", message))

    def _text(self, file: FileInfo, on_blank: Callable[[int], None] | None = None) -> _TextStream:
        compression = fsspec.utils.infer_compression(file.rel_path)
        return _TextStream(
            self.listing.open(file),
            self.config.encoding,
            decompress=compression,
            on_blank_line=on_blank,
        )

    def _csv_options(self, file: FileInfo) -> tuple[pa_csv.ReadOptions, str]:
        delimiter = self.config.delimiter
        if delimiter is None:
            delimiter = "\t" if ".tsv" in file.rel_path.lower() else ","
        read = pa_csv.ReadOptions(
            use_threads=False,  # serial parsing is what gives invalid rows their numbers
            block_size=self.config.block_size_bytes,
            encoding="utf8",  # _TextStream has already decoded and validated
        )
        return read, delimiter

    def _csv(self, file: FileInfo, batcher: _Batcher) -> Iterator[_Piece]:
        read_options, delimiter = self._csv_options(file)
        # First pass over the first block only: pyarrow parses the header exactly as it will
        # parse the rows (quoting, delimiter), and the names let every column be read as text.
        with contextlib.closing(self._text(file)) as probe:
            try:
                header = pa_csv.open_csv(
                    probe,
                    read_options=read_options,
                    parse_options=pa_csv.ParseOptions(
                        delimiter=delimiter, newlines_in_values=True, invalid_row_handler=_skip
                    ),
                )
            except (pa.ArrowException, OSError) as exc:
                if probe.error is not None:  # bad bytes before the header was complete
                    raise probe.error from exc
                if "Empty CSV file" not in str(exc):
                    raise
                yield from batcher.finish("no header and no rows")
                return
            names = header.schema.names
            header.close()
        lines = _CsvLines()

        def on_invalid(row: pa_csv.InvalidRow) -> str:
            line = lines.line_of(row.number) if row.number is not None else None
            if row.number is not None:
                lines.invalid.append(row.number)
            where = f"line {line}" if line is not None else "line ?"
            batcher.reject(
                line, Reject(record=f"{file.rel_path}:{where}", rule="column_count", value=row.text)
            )
            return "skip"

        with (
            contextlib.closing(self._text(file, lines.blank.append)) as stream,
            contextlib.closing(
                pa_csv.open_csv(
                    stream,
                    read_options=read_options,
                    parse_options=pa_csv.ParseOptions(
                        delimiter=delimiter,
                        newlines_in_values=True,  # quoted values may span lines in real exports
                        invalid_row_handler=on_invalid,
                    ),
                    convert_options=pa_csv.ConvertOptions(
                        column_types={name: pa.string() for name in names},
                        strings_can_be_null=True,  # an empty cell is null, any other text is kept
                        null_values=[""],  # and only an empty cell: "NA" or "null" is text
                        check_utf8=False,
                    ),
                )
            ) as reader,
        ):
            batcher.schema = reader.schema
            try:
                for record_batch in reader:
                    yield from batcher.add(record_batch, lines.next_lines(record_batch.num_rows))
            except (pa.ArrowException, OSError) as exc:
                if stream.error is not None:
                    raise stream.error from exc
                raise
            if stream.error is not None:
                raise stream.error
        yield from batcher.finish("header only, no data rows")

    def _jsonl(self, file: FileInfo, batcher: _Batcher) -> Iterator[_Piece]:
        rows: list[dict[str, Any]] = []
        row_lines: list[int] = []
        rel = file.rel_path

        def flush() -> Iterator[_Piece]:
            table = _rows_to_table(rows)
            if table.num_columns == 0:  # only {} lines: no column to hold them in
                for n in row_lines:
                    batcher.reject(n, Reject(record=f"{rel}:line {n}", rule="empty_object"))
            else:
                yield from batcher.add(table, list(row_lines))
            rows.clear()
            row_lines.clear()

        with contextlib.closing(self._text(file)) as stream:
            lines = io.BufferedReader(stream, buffer_size=_TEXT_CHUNK_BYTES)
            for number, raw in enumerate(lines, start=1):
                text = raw.strip()
                if not text:
                    continue
                try:
                    value = json.loads(text, parse_int=_Num, parse_float=_Num, parse_constant=_Num)
                except (ValueError, RecursionError) as exc:
                    batcher.reject(
                        number,
                        Reject(
                            record=f"{rel}:line {number}",
                            rule="not_json",
                            value=text.decode("utf-8", "replace"),
                        ),
                    )
                    log.debug("%s:%d not JSON: %s", rel, number, exc)
                    continue
                if not isinstance(value, dict):
                    batcher.reject(
                        number,
                        Reject(
                            record=f"{rel}:line {number}",
                            rule="not_an_object",
                            value=text.decode("utf-8", "replace"),
                        ),
                    )
                    continue
                rows.append(value)
                row_lines.append(number)
                if len(rows) >= self.config.batch_rows:
                    yield from flush()
            if stream.error is not None:
                if rows:
                    yield from flush()
                raise stream.error
        if rows:
            yield from flush()
        yield from batcher.finish("no JSON lines, only blank lines")

    def _parquet(self, file: FileInfo, batcher: _Batcher) -> Iterator[_Piece]:
        with contextlib.closing(self.listing.open(file)) as raw:
            parquet = pq.ParquetFile(raw)
            batcher.schema = parquet.schema_arrow
            row = 1
            for record_batch in parquet.iter_batches(batch_size=self.config.batch_rows):
                count = record_batch.num_rows
                yield from batcher.add(record_batch, list(range(row, row + count)))
                row += count
        yield from batcher.finish("0 rows")


def _skip(_row: pa_csv.InvalidRow) -> str:
    return "skip"
