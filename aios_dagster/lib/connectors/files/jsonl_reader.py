"""JSON-lines files: one object per line, values kept as the text a CSV cell would hold.

JSON numbers keep their original text and nested values are re-serialised as JSON, so a bad value
becomes a contract failure on that record rather than a type error for the whole file. A line
that is not JSON or not an object is rejected (``not_json`` / ``not_an_object``).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from aios_dagster.lib.connectors.files.batching import Batcher, Piece
from aios_dagster.lib.connectors.files.text_stream import TEXT_CHUNK_BYTES, TextStream
from aios_dagster.lib.connectors.source import Reject

log = logging.getLogger(__name__)


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


def read_jsonl(
    stream: TextStream, rel_path: str, batcher: Batcher, *, batch_rows: int
) -> Iterator[Piece]:
    """Read JSON lines into string columns in ``batch_rows`` pieces; bad lines are rejects."""
    rows: list[dict[str, Any]] = []
    row_lines: list[int] = []
    rel = rel_path

    def flush() -> Iterator[Piece]:
        table = _rows_to_table(rows)
        if table.num_columns == 0:  # only {} lines: no column to hold them in
            for n in row_lines:
                batcher.reject(n, Reject(record=f"{rel}:line {n}", rule="empty_object"))
        else:
            yield from batcher.add(table, list(row_lines))
        rows.clear()
        row_lines.clear()

    with contextlib.closing(stream):
        lines = io.BufferedReader(stream, buffer_size=TEXT_CHUNK_BYTES)
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
            if len(rows) >= batch_rows:
                yield from flush()
        if stream.error is not None:
            if rows:
                yield from flush()
            raise stream.error
    if rows:
        yield from flush()
    yield from batcher.finish("no JSON lines, only blank lines")
