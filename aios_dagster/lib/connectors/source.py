"""What every connector kind hands the landing runtime: batches of rows plus the cursor after them.

A reader (files, mailbox, sql, http, nats) only knows how to read its system. Everything that must
be the same for all kinds lives in the runtime (``connectors.runtime``): PII policy, the contract
split into lake and quarantine, ingest-date partitioning, dedup, and advancing the cursor only
after the batch is durably written. Keeping that boundary is what makes the error semantics
consistent across kinds:

* ``TransientSourceError``: the system was briefly unavailable (connection refused, HTTP 5xx/429,
  a timeout). Each boundary retries them once, in the reader: through ``aios_dagster.lib.retry``
  (one policy, bounded in attempts and time), or where a client library already reconnects
  (nats-py across a cluster's servers) through that alone. When retries run out the run fails
  and the next run resumes from the last durable cursor; nothing above the reader retries again.
* ``PermanentSourceError``: retrying cannot help (HTTP 4xx, an unreadable file, a schema the
  connector cannot map). The run fails naming the source, the record and the reason.
* ``Reject``: one record is bad but the rest of the batch is fine (a bus message that is not
  JSON, a JSON line that is not an object). It goes to quarantine with its reason; good records
  continue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, overload

import pyarrow as pa

Cursor = dict[str, Any]
"""A JSON-serialisable position in a source (watermark, files seen, stream sequence, page)."""


class SourceError(RuntimeError):
    """A source could not be read. The message always names source, record and reason."""

    def __init__(self, source: str, record: str | None, reason: str) -> None:
        self.source = source
        self.record = record
        self.reason = reason
        where = f"{source} [{record}]" if record else source
        super().__init__(f"{where}: {reason}")


class TransientSourceError(SourceError):
    """Worth retrying: the source may answer next time (network, 5xx, 429, timeouts).

    ``retry_after`` is the source's own hint (HTTP ``Retry-After``) in seconds: the retry
    policy (``aios_dagster.lib.retry``) waits at least that long, or gives up at once when the
    hint is longer than it may wait.
    """

    def __init__(
        self, source: str, record: str | None, reason: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(source, record, reason)
        self.retry_after = retry_after


class PermanentSourceError(SourceError):
    """Not worth retrying: the run fails and a person has to fix the source or the config."""


@dataclass(frozen=True)
class Reject:
    """A record that could not be turned into a row: quarantined with its reason, never dropped."""

    record: str  # where it was: "line 17", "seq 42", "page 3 item 5", a file name
    rule: str  # short machine name: "not_json", "not_an_object", "undecodable", "unparseable"
    value: str | None = None  # the raw value, truncated by the runtime before it is stored
    record_id: str | None = None


@dataclass
class SourceBatch:
    """One unit of durable progress.

    ``batch_id`` must be deterministic for the same source records (a file's name and content
    hash, a watermark range, a stream sequence range): the runtime names the lake part after it,
    so re-landing the same batch after a crash rewrites that part instead of duplicating rows.
    ``cursor`` is the position *after* this batch; the runtime saves it only once the batch is
    in the lake, then calls ``ack`` (e.g. JetStream acknowledgements).
    """

    table: pa.Table
    batch_id: str
    source: str  # human-readable: path, URL, table, subject
    cursor: Cursor
    rejects: list[Reject] = field(default_factory=list)
    ack: Callable[[], None] | None = None
    row_refs: Sequence[str] | None = None  # per-row location in the source (file:line), optional
    sparse: bool = False  # records are JSON objects: a key absent from the whole batch is a null


class LineRefs(Sequence[str]):
    """``"<prefix><line>"`` for each row, formatted only when asked for.

    Only the rows that go to quarantine need their reference; formatting one string per row
    of every batch cost the reader's thread more than the batch's line numbers themselves.
    """

    def __init__(self, prefix: str, lines: Sequence[int]) -> None:
        self.prefix = prefix
        self.lines = lines

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [f"{self.prefix}{n}" for n in self.lines[index]]
        return f"{self.prefix}{self.lines[index]}"

    def __eq__(self, other: object) -> bool:
        """Equal to any sequence of the same references, as the list it stands for would be."""
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # a list is not hashable either


class SourceReader(Protocol):
    """A connector kind bound to one configured source."""

    def batches(self, cursor: Cursor) -> Iterator[SourceBatch]:
        """Yield batches of records newer than ``cursor``, oldest first."""
        ...

    def has_new(self, cursor: Cursor) -> bool:
        """Cheap probe used by sensors: is there anything after ``cursor``?"""
        ...

    def describe(self) -> str:
        """Where this reader reads from, for metadata and error messages (no secrets)."""
        ...
