"""Which files of a drop folder to read: listing, fingerprints and the files cursor.

Independent of the file format, so the mailbox (``.eml``) connector reuses it. The cursor
remembers every ingested file with a fingerprint (size plus modification time or ETag), so a file
is read once, a replaced file is read again (dedup by record id happens downstream), and a file
that is still being written can be held back with ``min_age_s``.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from aios_dagster.lib.connectors.files.storage import GuardedFile, StorageError
from aios_dagster.lib.connectors.source import (
    Cursor,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from aios_dagster.lib.retry import RetryPolicy, call_with_retry

#: Names that writers use for files they have not finished yet (or hidden bookkeeping files).
PARTIAL_SUFFIXES = (".tmp", ".part", ".partial", ".filepart", ".crdownload")

#: A listing is retried briefly: a drop folder that stays unreachable fails the run, and the
#: next run (the sensor's next tick) resumes from the cursor.
LISTING_RETRY = RetryPolicy(attempts=3, first_wait_s=0.5, max_wait_s=4.0, total_s=10.0)

# Modification-time and content-identity keys that fsspec implementations put in ``info()``.
_MTIME_KEYS = ("mtime", "LastModified", "last_modified", "updated", "modified", "created")
_ETAG_KEYS = ("ETag", "etag", "md5Hash", "content_md5")


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


def _storage_error(source: str, what: str) -> Callable[[Exception], SourceError | None]:
    """Permission problems cannot succeed on retry; other ``OSError``s may (a flaky store)."""

    def classify(exc: Exception) -> SourceError | None:
        if isinstance(exc, PermissionError):
            return PermanentSourceError(source, None, f"{what}: permission denied ({exc})")
        if isinstance(exc, OSError):
            return TransientSourceError(source, None, f"{what} failed: {exc}")
        return None

    return classify


def list_files(
    fs: fsspec.AbstractFileSystem,
    root: str,
    pattern: str = "*",
    *,
    min_age_s: float = 0.0,
    now: float | None = None,
    retry_policy: RetryPolicy = LISTING_RETRY,
) -> list[FileInfo]:
    """Files under ``root`` matching the glob ``pattern`` that are ready to read, sorted by path.

    ``pattern`` is relative to ``root`` (``*.csv`` for the folder itself, ``**/*.csv`` for
    subfolders too). Hidden, bookkeeping and partial names are skipped (``is_partial_name``), and
    so are files modified less than ``min_age_s`` seconds ago: a writer that does not rename into
    place atomically is still appending to them. A store that reports no modification time
    cannot be aged; its files are treated as ready. A failing listing is retried under
    ``retry_policy``; permission denied is not retried.
    """
    root = root.rstrip("/")
    source = fs.unstrip_protocol(root)
    if isinstance(fs, LocalFileSystem) and not Path(root).is_dir():
        # On object stores an empty prefix simply has no files; a missing local folder is a typo
        # in the config that would otherwise read nothing forever.
        raise PermanentSourceError(source, None, "drop folder does not exist or is not a folder")
    with contextlib.suppress(Exception):
        fs.invalidate_cache(root)  # listings are cached by some stores (s3fs, gcsfs)
    what = "listing the drop folder"
    found: dict[str, Mapping[str, Any]] = call_with_retry(
        lambda: fs.glob(f"{root}/{pattern}", detail=True),
        policy=retry_policy,
        source=source,
        what=what,
        classify=_storage_error(source, what),
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
    retry_policy: RetryPolicy = LISTING_RETRY,
) -> list[FileInfo]:
    """Ready files that ``cursor`` has not seen in their current version, sorted by path."""
    seen = seen_files(cursor)
    listed = list_files(fs, root, pattern, min_age_s=min_age_s, now=now, retry_policy=retry_policy)
    new = [f for f in listed if seen.get(f.rel_path) != f.fingerprint]
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
    retry_policy: RetryPolicy = field(default=LISTING_RETRY)

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
            self.fs,
            self.root,
            self.pattern,
            min_age_s=self.min_age_s,
            now=self.clock(),
            retry_policy=self.retry_policy,
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
            retry_policy=self.retry_policy,
        )

    def open(self, file: FileInfo) -> IO[bytes]:
        """Open for binary reading; storage errors surface as ``StorageError`` (see there)."""
        try:
            raw = self.fs.open(file.path, "rb")
        except OSError as exc:
            raise StorageError(exc) from exc
        return GuardedFile(raw)
