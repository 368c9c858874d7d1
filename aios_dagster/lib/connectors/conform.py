"""Bring a source batch to the declared landed schema, reporting drift by name, losing nothing.

Sources disagree with their declaration in three ways, and each is reported so a person can act:

* a **new** column: not landed (it could carry PII nobody reviewed) and named in the run's
  metadata; add it to the connector's ``schema`` (and ``pii``) to land it;
* a **missing** column: every row of the batch is quarantined under ``schema_missing_column(c)``,
  because landing rows with a silently null column would poison features downstream;
* a **retyped** column (values that no longer parse as the declared type): each such value's
  row is quarantined under ``type(c: <type>)`` with the value, and the column is reported as
  retyped when most of its values fail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

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
