"""The ``mailbox`` connector kind: a folder of ``.eml`` files, each message ingested once.

Parsing is :mod:`aios_dagster.lib.connectors.mailbox` (headers, plain text, HTML converted to
text, attachments listed not loaded, threads by Message-ID/In-Reply-To). This module adds what
makes it a connector: which files are new (the drop-folder listing shared with the ``files``
kind, local path or any fsspec URL), batches of a bounded number of files, and per-row
references (the file name) for quarantine.

A file in the folder that the pattern does not match (a ``.msg`` export, a ``.txt`` note, an
``.eml.gz``) is not mail we can read, but it was delivered to the inbox: it is quarantined once,
as a reject naming the file and the pattern, so nobody has to notice its absence.
"""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from aios_dagster.lib.connectors.files_source import FileInfo, FileListing, mark_ingested
from aios_dagster.lib.connectors.mailbox import EMAIL_COLUMNS, ParsedEmail, parse_message
from aios_dagster.lib.connectors.source import Cursor, PermanentSourceError, Reject, SourceBatch


class MailboxSourceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # a folder: local path or fsspec URL
    pattern: str = "*.eml"
    batch_files: int = 5_000
    min_age_s: float = 0.0  # skip files modified this recently (a writer may still be copying)


def _batch_id(files: list[FileInfo]) -> str:
    """Same files in the same versions, same id: a re-read batch rewrites its lake part."""
    key = "\n".join(f"{f.rel_path}\0{f.fingerprint}" for f in files).encode()
    return hashlib.sha1(key, usedforsecurity=False).hexdigest()[:20]


def _any_file_pattern(pattern: str) -> str:
    """``pattern`` with its file-name part widened to every name (``**/*.eml`` -> ``**/*``)."""
    folder, _, _ = pattern.rpartition("/")
    return f"{folder}/*" if folder else "*"


def emails_table(rows: list[dict[str, object]]) -> pa.Table:
    frame = pd.DataFrame(rows, columns=list(EMAIL_COLUMNS))
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True)
    return pa.Table.from_pandas(frame, preserve_index=False)


class MailboxReader:
    """Reads new ``.eml`` files of one folder, ``batch_files`` at a time, in name order."""

    def __init__(self, config: MailboxSourceConfig) -> None:
        self.config = config
        self.listing = FileListing.from_url(config.path, config.pattern, min_age_s=config.min_age_s)
        self.everything = FileListing(
            self.listing.fs,
            self.listing.root,
            _any_file_pattern(config.pattern),
            min_age_s=config.min_age_s,
        )

    def describe(self) -> str:
        return f"mailbox {self.listing.source}"

    def _new(self, cursor: Cursor) -> tuple[list[FileInfo], list[FileInfo]]:
        """New mail and new files the pattern does not match, from *one* listing.

        Two listings (one for mail, one for everything) would misfile a message delivered
        between them as a stray: it showed only in the second, was quarantined as
        "not matching the pattern" and never routed. Hidden and partial names are never listed.
        """
        if self.listing.folder_missing():
            raise PermanentSourceError(self.listing.source, None, "mailbox folder does not exist")
        everything = self.everything.new_files(cursor)
        name = self.config.pattern.rpartition("/")[2]
        mail = [f for f in everything if fnmatch.fnmatchcase(f.rel_path.rpartition("/")[2], name)]
        matched = {f.rel_path for f in mail}
        return mail, [f for f in everything if f.rel_path not in matched]

    def has_new(self, cursor: Cursor) -> bool:
        mail, strays = self._new(cursor)
        return bool(mail) or bool(strays)

    def _parse(self, file: FileInfo) -> ParsedEmail:
        delivered = datetime.fromtimestamp(file.mtime, UTC) if file.mtime is not None else None
        try:
            with self.listing.open(file) as handle:
                raw = handle.read()
        except Exception as exc:  # unreadable file: a quarantined record with its reason
            return parse_message(b"", file.rel_path, read_error=f"{type(exc).__name__}: {exc}")
        return parse_message(raw, file.rel_path, delivered_at=delivered)

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        new, strays = self._new(cursor)
        rejects = [
            Reject(record=f.rel_path, rule=f"not_matching_pattern({self.config.pattern})")
            for f in strays
        ]
        size = max(1, self.config.batch_files)
        chunks = [new[start : start + size] for start in range(0, len(new), size)] or [[]]
        for number, chunk in enumerate(chunks):
            listed = [*chunk, *strays] if number == 0 else chunk
            if not listed:
                return
            cursor = mark_ingested(cursor, *listed)
            yield SourceBatch(
                table=emails_table([self._parse(f).__dict__ for f in chunk]),
                batch_id=_batch_id(listed),
                source=self.listing.source,
                cursor=cursor,
                rejects=rejects if number == 0 else [],
                row_refs=[f.rel_path for f in chunk],
            )
