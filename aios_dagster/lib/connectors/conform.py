"""Bring a source batch to the declared landed schema, reporting drift by name, losing nothing.

Sources disagree with their declaration in three ways, and each is reported so a person can act:

* a **new** column: not landed (it could carry PII nobody reviewed) and named in the run's
  metadata; add it to the connector's ``schema`` (and ``pii``) to land it;
* a **missing** column: every row of the batch is quarantined under ``schema_missing_column(c)``,
  because landing rows with a silently null column would poison features downstream;
* a **retyped** column (values that no longer parse as the declared type): each such value's
  row is quarantined under ``type(c: <type>)`` with the value, and the column is reported as
  retyped when most of its values fail.

Batches are cast in Arrow (``conform_table``). Text in the plain forms nearly every source
writes (``-12``, ``12.50``, ``true``, ``2026-01-01T09:30:00Z``) is cast by Arrow's kernels;
every other value, and every column that is not text, goes through the value-by-value rules of
``conform`` (the pandas form, which re-processing uses), so both give the same answer for every
value. ``tests/connectors/test_conform.py`` holds them to it.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from aios_dagster.lib.connectors.columns import contiguous, string_offsets
from aios_dagster.lib.connectors.spec import ColumnType

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "date": pa.string(),  # ISO date text; dbt casts it, contracts check its format
    "list<string>": pa.list_(pa.string()),
}
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}
RETYPED_SHARE = 0.5


def arrow_schema(schema: dict[str, ColumnType]) -> pa.Schema:
    return pa.schema([(name, ARROW_TYPES[kind]) for name, kind in schema.items()])


@dataclass
class SchemaDrift:
    new: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    retyped: dict[str, str] = field(default_factory=dict)  # column -> declared type

    @property
    def any(self) -> bool:
        return bool(self.new or self.missing or self.retyped)

    def describe(self) -> str:
        parts = []
        if self.new:
            parts.append(f"new columns (not landed): {', '.join(self.new)}")
        if self.missing:
            parts.append(f"missing columns: {', '.join(self.missing)}")
        if self.retyped:
            parts.append(
                "retyped columns: "
                + ", ".join(f"{c} (declared {t})" for c, t in self.retyped.items())
            )
        return "; ".join(parts) or "none"

    def merge(self, other: SchemaDrift) -> None:
        self.new = sorted(set(self.new) | set(other.new))
        self.missing = sorted(set(self.missing) | set(other.missing))
        self.retyped.update(other.retyped)


@dataclass(frozen=True)
class TypeFailure:
    index: int
    column: str
    rule: str
    value: str | None


def detect_drift(columns: list[str], expected: set[str]) -> SchemaDrift:
    present = set(columns)
    return SchemaDrift(
        new=sorted(c for c in present - expected if not c.startswith("_")),
        missing=sorted(expected - present),
    )


def _as_list(value: Any) -> Any:
    if value is None or isinstance(value, list):
        return value
    if isinstance(value, np.ndarray):
        return [str(v) for v in value.tolist()]
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return [value]
        return [str(v) for v in parsed] if isinstance(parsed, list) else [value]
    return [str(value)]


def _to_int(value: Any) -> int | None:
    """An exact integer, or None for null and for anything that is not a whole number."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return int(value) if float(value).is_integer() else None
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None


def _cast(series: pd.Series, kind: ColumnType) -> pd.Series:
    """Cast one column; values that cannot be cast become null (the caller compares nulls)."""
    if kind == "string" or kind == "date":
        if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
            return series.where(series.notna(), None)  # already text: skip the per-value map

        def to_text(v: Any) -> Any:
            if v is None or isinstance(v, str):
                return v
            return None if isinstance(v, float) and np.isnan(v) else str(v)

        return series.map(to_text)
    if kind == "int64":
        # Parsed value by value: through float64 (what to_numeric gives a column with a null)
        # an id above 2**53 would silently change.
        return pd.array([_to_int(v) for v in series], dtype="Int64")
    if kind == "float64":
        return pd.to_numeric(series, errors="coerce").astype("float64")
    if kind == "bool":

        def to_bool(v: Any) -> Any:
            if v is None or (isinstance(v, float) and np.isnan(v)):
                return None
            if isinstance(v, bool | np.bool_):
                return bool(v)
            text = str(v).strip().lower()
            return True if text in _TRUE else False if text in _FALSE else None

        return series.map(to_bool).astype("boolean")
    if kind == "timestamp":
        if pd.api.types.is_datetime64_any_dtype(series):
            return pd.to_datetime(series, utc=True)
        return pd.to_datetime(series, utc=True, errors="coerce", format="ISO8601")
    if kind == "list<string>":
        return series.map(_as_list)
    raise ValueError(f"unknown column type {kind}")


def conform(
    frame: pd.DataFrame, schema: dict[str, ColumnType]
) -> tuple[pd.DataFrame, list[TypeFailure], SchemaDrift]:
    """Cast ``frame`` to ``schema`` (declared columns only, in order).

    Returns the cast frame (rows whose value failed to cast keep a null there: the caller
    quarantines them by index), one failure per bad value, and retyped-column drift.
    """
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame(index=frame.index)
    failures: list[TypeFailure] = []
    drift = SchemaDrift()
    for column, kind in schema.items():
        if column not in frame.columns:
            out[column] = None
            continue
        raw = frame[column]
        cast = _cast(raw, kind)
        raw_null = raw.isna() if kind != "list<string>" else raw.map(lambda v: v is None)
        cast_null = cast.isna() if kind != "list<string>" else cast.map(lambda v: v is None)
        bad = cast_null & ~raw_null
        if bad.any():
            rule = f"type({column}: {kind})"
            failures += [
                TypeFailure(int(i), column, rule, str(raw.iat[i])[:500])
                for i in np.flatnonzero(bad)
            ]
            if bad.sum() > RETYPED_SHARE * max(int((~raw_null).sum()), 1):
                drift.retyped[column] = kind
        out[column] = cast
    return out, failures, drift


# Plain text forms that Arrow's casts read exactly as the value-by-value rules above do. Floats:
# at most 15 digits, where both parsers are correctly rounded (pandas is not beyond that).
# Timestamps: years 1900-2099, inside pandas' nanosecond range, and valid clock fields.
_PLAIN_INT = r"^-?[0-9]{1,18}$"
_PLAIN_FLOAT = r"^-?[0-9]+(\.[0-9]+)?$"
_PLAIN_FLOAT_CHARS = 16
_PLAIN_TIMESTAMP = (
    r"^(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})$"
)
_BOOL_TEXT = {True: pa.array(sorted(_TRUE)), False: pa.array(sorted(_FALSE))}


def _flag(condition: pa.Array) -> pa.Array:
    return pc.fill_null(condition, False)


def _is_text(array: pa.Array) -> bool:
    return pa.types.is_string(array.type) or pa.types.is_large_string(array.type)


# The commonest timestamp form, "YYYY-MM-DDTHH:MM:SSZ", checked byte by byte in numpy: a regex
# call per value was the largest single cost of conforming an export. Digits where digits go,
# the literal separators elsewhere, and the same bounds as ``_PLAIN_TIMESTAMP``.
_UTC_SECONDS_WIDTH = 20
_UTC_SECONDS_LITERALS = {4: "-", 7: "-", 10: "T", 13: ":", 16: ":", 19: "Z"}
_UTC_SECONDS_DIGITS = [i for i in range(_UTC_SECONDS_WIDTH) if i not in _UTC_SECONDS_LITERALS]


def _utc_seconds_form(raw: pa.Array, offsets: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` (values of that width) are ``YYYY-MM-DDTHH:MM:SSZ`` in its bounds."""
    data = np.frombuffer(raw.buffers()[2], dtype=np.uint8)
    starts = offsets[rows]
    first, last = int(starts[0]), int(starts[-1])
    if last - first == (len(rows) - 1) * _UTC_SECONDS_WIDTH:
        # Every value has the width and they sit back to back (the usual column of one
        # format): the bytes are already the rows of a matrix, so no index matrix is built.
        chars = data[first : last + _UTC_SECONDS_WIDTH].reshape(len(rows), _UTC_SECONDS_WIDTH)
    else:
        chars = data[starts[:, None] + np.arange(_UTC_SECONDS_WIDTH)]
    digits = chars[:, _UTC_SECONDS_DIGITS] - np.uint8(ord("0"))  # wraps below "0": > 9 too
    ok = (digits <= 9).all(axis=1)
    for at, literal in _UTC_SECONDS_LITERALS.items():
        ok &= chars[:, at] == ord(literal)
    ok &= ((chars[:, 0] == ord("1")) & (chars[:, 1] == ord("9"))) | (
        (chars[:, 0] == ord("2")) & (chars[:, 1] == ord("0"))
    )
    ok &= (chars[:, 11] <= ord("1")) | ((chars[:, 11] == ord("2")) & (chars[:, 12] <= ord("3")))
    ok &= (chars[:, 14] <= ord("5")) & (chars[:, 17] <= ord("5"))
    return ok


def _plain_timestamps(raw: pa.Array) -> pa.Array:
    """``_PLAIN_TIMESTAMP`` over a column; the regex runs only on values of another width.

    A value of exactly that width matches the pattern only in the seconds-and-"Z" form (a
    fraction or an offset makes it longer), so the byte check decides those alone.
    """
    offsets = string_offsets(raw)
    valid = raw.is_valid().to_numpy(zero_copy_only=False)
    fixed = (np.diff(offsets) == _UTC_SECONDS_WIDTH) & valid
    plain = np.zeros(len(raw), dtype=bool)
    rows = np.flatnonzero(fixed)
    if len(rows):
        plain[rows] = _utc_seconds_form(raw, offsets, rows)
    other = np.flatnonzero(valid & ~fixed)
    if len(other):
        matched = pc.match_substring_regex(raw.take(pa.array(other)), _PLAIN_TIMESTAMP)
        plain[other] = _flag(matched).to_numpy(zero_copy_only=False)
    return pa.array(plain)


def _plain(raw: pa.Array, kind: ColumnType) -> pa.Array | None:
    """Which values Arrow casts directly (None: no fast form for this type)."""
    if kind == "int64":
        return _flag(pc.match_substring_regex(raw, _PLAIN_INT))
    if kind == "float64":
        short = pc.less_equal(pc.utf8_length(raw), _PLAIN_FLOAT_CHARS)
        return _flag(pc.and_(short, pc.match_substring_regex(raw, _PLAIN_FLOAT)))
    if kind == "timestamp":
        return _plain_timestamps(raw)
    if kind == "bool":
        return _flag(pc.is_in(pc.ascii_lower(raw), pa.concat_arrays(list(_BOOL_TEXT.values()))))
    return None


def _cast_plain(raw: pa.Array, plain: pa.Array, kind: ColumnType) -> pa.Array:
    subset = pc.if_else(plain, raw, pa.scalar(None, raw.type))
    if kind == "bool":
        lowered = pc.ascii_lower(subset)
        return pc.if_else(
            pc.is_in(lowered, _BOOL_TEXT[True]),
            True,
            pc.if_else(pc.is_in(lowered, _BOOL_TEXT[False]), False, pa.scalar(None, pa.bool_())),
        )
    return pc.cast(subset, ARROW_TYPES[kind])


def _cast_by_value(values: pa.Array, kind: ColumnType) -> pa.Array:
    """The value-by-value rules of ``_cast`` for a few values, as an Arrow array."""
    series = values.to_pandas(integer_object_nulls=True)
    cast = _cast(series, kind)
    if kind == "list<string>":
        return pa.array(cast.tolist(), ARROW_TYPES[kind])
    return pa.array(cast, ARROW_TYPES[kind], from_pandas=True)


def _cast_array(raw: pa.Array, kind: ColumnType) -> pa.Array:
    """``raw`` cast to ``kind``; a value that cannot be cast becomes null."""
    target = ARROW_TYPES[kind]
    if _is_text(raw) and kind in ("string", "date"):
        return raw.cast(target)
    if _is_text(raw) and kind == "int64":
        # Arrow reads integers only as [-]digits within int64, which int() reads the same way:
        # when every value casts, the value rules would give the same numbers.
        with contextlib.suppress(pa.ArrowInvalid):
            return pc.cast(raw, target)
    plain = _plain(raw, kind) if _is_text(raw) else None
    if plain is None:
        return _cast_by_value(raw, kind)
    try:
        cast = _cast_plain(raw, plain, kind)
    except pa.ArrowInvalid:  # a plain-looking value Arrow refuses (February 30th)
        return _cast_by_value(raw, kind)
    rest = _flag(pc.and_(pc.is_valid(raw), pc.invert(plain)))
    if pc.any(rest).as_py():
        cast = pc.replace_with_mask(cast, rest, _cast_by_value(raw.filter(rest), kind))
    return cast


def _raw_nulls(raw: pa.Array, kind: ColumnType) -> np.ndarray:
    """Which raw values count as missing: what pandas calls NA (NaN too), lists only None."""
    if _is_text(raw) or kind == "list<string>" or not pa.types.is_floating(raw.type):
        return raw.is_null().to_numpy(zero_copy_only=False)
    return pc.is_null(raw, nan_is_null=True).to_numpy(zero_copy_only=False)


def conform_table(
    table: pa.Table, schema: dict[str, ColumnType]
) -> tuple[pa.Table, list[TypeFailure], SchemaDrift]:
    """``conform`` for an Arrow batch: the same cast, failures and drift, kept in Arrow.

    Returns the table in the declared schema (a value that failed to cast is null there: the
    caller quarantines its row by index), one failure per bad value, and retyped-column drift.
    """
    rows = table.num_rows
    columns: list[pa.Array | pa.ChunkedArray] = []
    failures: list[TypeFailure] = []
    drift = SchemaDrift()
    for column, kind in schema.items():
        if column not in table.column_names:
            columns.append(pa.nulls(rows, ARROW_TYPES[kind]))
            continue
        if kind in ("string", "date") and pa.types.is_string(table.column(column).type):
            # Text declared as text: nothing to cast, nothing can fail; kept in its chunks.
            columns.append(table.column(column))
            continue
        raw = contiguous(table.column(column))
        cast = _cast_array(raw, kind)
        raw_null = _raw_nulls(raw, kind)
        bad = cast.is_null().to_numpy(zero_copy_only=False) & ~raw_null
        if bad.any():
            rule = f"type({column}: {kind})"
            where = np.flatnonzero(bad)
            values = raw.take(pa.array(where)).to_pandas(integer_object_nulls=True)
            failures += [
                TypeFailure(int(i), column, rule, str(v)[:500])
                for i, v in zip(where, values, strict=True)
            ]
            if len(where) > RETYPED_SHARE * max(int((~raw_null).sum()), 1):
                drift.retyped[column] = kind
        columns.append(cast)
    return pa.Table.from_arrays(columns, schema=arrow_schema(schema)), failures, drift
