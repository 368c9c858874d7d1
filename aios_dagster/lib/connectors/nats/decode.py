"""Message payloads to rows: JSON decoding, rejects for quarantine, and batch typing.

Kept apart from the consumer because it is pure (bytes in, Arrow table and rejects out): what
makes a message unlandable is decided here, independent of how it was fetched.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from aios_dagster.lib.connectors.source import Reject

META_COLUMNS = ("_stream_seq", "_subject")
"""Columns the reader adds to every row; a payload that already has one of them is rejected."""

_PREVIEW_CHARS = 500  # how much of a rejected payload goes to quarantine


def _preview(text: str) -> str:
    return text if len(text) <= _PREVIEW_CHARS else text[:_PREVIEW_CHARS] + "..."


def _parse(data: bytes, record: str) -> tuple[dict[str, Any] | None, Reject | None]:
    """One payload -> one row, or the reason it cannot be one (the rest of the batch goes on)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None, Reject(record, "undecodable", _preview(data.decode("utf-8", "replace")))
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return None, Reject(record, "not_json", _preview(text))
    if not isinstance(value, dict):
        return None, Reject(record, "not_an_object", _preview(text))
    if any(column in value for column in META_COLUMNS):
        # Overwriting the producer's field would silently lose it; quarantine says why.
        return None, Reject(record, "reserved_field", _preview(text))
    return value, None


def _to_table(rows: list[dict[str, Any]]) -> tuple[pa.Table, list[int], dict[int, str]]:
    """Rows -> an Arrow table, typed by Arrow's inference over the whole batch.

    Why not ``pa.Table.from_pylist(rows)`` as is: it takes the column names from the *first*
    row only, silently dropping a field that first appears later; here the columns are the
    union of all keys in first-seen order (missing values are null), then ``_stream_seq``
    (int64) and ``_subject`` (string). Types are inferred (ints -> int64, ints mixed with floats
    -> double, objects -> struct, arrays -> list, all-null -> null) because the bus carries no
    schema: the connector's declared schema and contract downstream are what pin the types.

    When a field's values cannot share one type (``1`` in one message, ``"x"`` in another) the
    first-seen type wins and the later rows are returned as conflicts (row index -> column) to
    be rejected, so one odd producer cannot block the stream behind a batch that never lands.
    Returns the table, the indexes of the rows kept, and the conflicts.
    """
    meta = {"_stream_seq": pa.int64(), "_subject": pa.string()}
    names = [name for name in dict.fromkeys(k for row in rows for k in row) if name not in meta]
    conflicts: dict[int, str] = {}
    while True:
        kept = [i for i in range(len(rows)) if i not in conflicts]
        columns: dict[str, pa.Array] = {}
        failed: str | None = None
        for name in names:
            try:
                columns[name] = pa.array([rows[i].get(name) for i in kept])
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                failed = name
                break
        if failed is None:
            break
        bad = _conflicting([(i, rows[i].get(failed)) for i in kept])
        if not bad:  # Arrow rejects the column although each value fits: keep none of them
            bad = [i for i in kept if rows[i].get(failed) is not None]
        for i in bad:
            conflicts[i] = failed
    for name, type_ in meta.items():
        columns[name] = pa.array([rows[i][name] for i in kept], type=type_)
    # from_arrays, not pa.table(dict): the latter imports pandas (a second, once) to sniff a frame
    return pa.Table.from_arrays(list(columns.values()), names=list(columns)), kept, conflicts


def _conflicting(values: list[tuple[int, Any]]) -> list[int]:
    """Indexes whose value does not fit the type of the values accepted before it."""
    accepted: list[Any] = []
    type_: pa.DataType = pa.null()
    bad: list[int] = []
    for index, value in values:
        try:
            pa.array([value], type=type_)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            try:  # may still fit by widening (int then float -> double); the slow path, rarely
                type_ = pa.array([*accepted, value]).type
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                bad.append(index)
                continue
        accepted.append(value)
    return bad
