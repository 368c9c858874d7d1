"""Keyset positions: turning a batch's last ``(watermark, id)`` into a cursor and a batch id.

The cursor is JSON, so key values are reduced to numbers or text here; the batch id is derived
from the key range alone, so a re-read of the same range rewrites the same lake part.
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import date, datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any
from uuid import UUID

import pyarrow as pa

from aios_dagster.lib.connectors.source import PermanentSourceError


def _comparable(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Extension columns (uuid) compared by their storage: compute kernels skip extensions."""
    if isinstance(column.type, pa.BaseExtensionType):
        return pa.chunked_array([c.storage for c in column.chunks], column.type.storage_type)
    return column


def _position_value(value: Any, column: str, source: str) -> str | int | float:
    """A key value as JSON: numbers stay numbers, time values become ISO-8601 text."""
    if isinstance(value, bool) or value is None:
        raise PermanentSourceError(
            source, f"column {column}", f"{value!r} cannot be a keyset position"
        )
    if isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise PermanentSourceError(source, f"column {column}", f"non-finite value {value}")
        return value
    if isinstance(value, datetime | date | dt_time) or hasattr(value, "isoformat"):
        return str(value.isoformat())  # datetime, date, time, pandas.Timestamp (nanoseconds)
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise PermanentSourceError(
        source,
        f"column {column}",
        f"type {type(value).__name__} cannot be a watermark or id (use a number, text, "
        "date or timestamp column)",
    )


def _batch_id(source: str, start: tuple[Any, str] | None, end: tuple[Any, str]) -> str:
    """Same source and same (start, end] key range: same id, so a re-read rewrites the part."""
    payload = json.dumps(
        {"source": source, "start": list(start) if start else None, "end": list(end)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]
