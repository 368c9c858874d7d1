"""Which columns Evidently checks for drift, as what type, and the values its tests then see.

``Report([DataDriftPreset()])`` types every column from the *current* frame alone
(``evidently.core.datasets.infer_column_type``) and checks the numerical, categorical and text
ones, in that order. Each stat test then sees the column with NaN and +/-inf dropped. Mirroring
both exactly is what makes the verdicts agree, so each rule below is Evidently's, quirks included
(``uint8``, nullable ``Int64`` and object columns holding non-strings are never checked).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aios_dagster.lib.monitoring.drift_stats.methods import ColumnKind

INTEGER_CARDINALITY_LIMIT = 10
"""Evidently's limit: an int column with at most this many distinct values is categorical."""


def infer_kind(series: pd.Series) -> ColumnKind | None:
    """Evidently's column type for ``series``, or None for types it computes no drift for."""
    return typed(series)[0]


def typed(series: pd.Series) -> tuple[ColumnKind | None, pd.Series | None]:
    """:func:`infer_kind`, and the value counts (NaN dropped) typing a string column took.

    Typing a string column counts its distinct values; kept, the counts serve its test too.
    """
    dtype = series.dtype.name
    if dtype.startswith("float"):
        return "numerical", None
    if dtype.startswith("int"):
        few = series.nunique() <= INTEGER_CARDINALITY_LIMIT
        return ("categorical" if few else "numerical"), None
    if dtype in ("string", "str"):
        return _text_or_categorical(series)
    if dtype == "object":
        present = np.flatnonzero(series.notna().to_numpy())
        if len(present) == 0:
            return None, None
        if isinstance(series.iat[present[0]], str) and isinstance(series.iat[present[-1]], str):
            return _text_or_categorical(series)
        return None, None  # lists, numbers as objects, mixed: Evidently checks none of them
    if dtype in ("bool", "category"):
        return "categorical", None
    return None, None


def _text_or_categorical(series: pd.Series) -> tuple[ColumnKind, pd.Series]:
    counts = series.value_counts(dropna=True, sort=False)
    kind: ColumnKind = "text" if len(counts) > int(counts.sum()) * 0.5 else "categorical"
    return kind, counts


def drift_columns(current: pd.DataFrame) -> list[tuple[str, ColumnKind, pd.Series | None]]:
    """What ``DataDriftPreset()`` checks when not told: numerical, categorical, text columns.

    Each with the value counts its typing took, if any (see :func:`typed`).
    """
    found = {str(c): typed(current[c]) for c in current.columns}
    order: tuple[ColumnKind, ...] = ("numerical", "categorical", "text")
    return [(c, k, n) for want in order for c, (k, n) in found.items() if k == want]


def cleaned(series: pd.Series) -> pd.Series:
    """What Evidently's ``ValueDrift`` hands a stat test: NaN and +/-inf dropped."""
    return series.replace([-np.inf, np.inf], np.nan).dropna()


@dataclass(frozen=True)
class NumericSide:
    """One window of a numerical column, NaN and +/-inf dropped, in its original order."""

    values: np.ndarray
    had_nan: bool
    had_inf: bool

    @classmethod
    def of(cls, series: pd.Series) -> NumericSide:
        raw = series.to_numpy()
        if raw.dtype.kind != "f":
            return cls(raw, had_nan=False, had_inf=False)
        nan = np.isnan(raw)
        finite = np.isfinite(raw)
        if finite.all():
            return cls(raw, had_nan=False, had_inf=False)
        return cls(raw[finite], had_nan=bool(nan.any()), had_inf=bool((~finite & ~nan).any()))

    def std(self) -> float:
        """Population std exactly as ``np.std`` of a pandas Series computes it (pandas' own)."""
        return float(pd.Series(self.values, copy=False).std(ddof=0))


def distinct_count(reference: np.ndarray, current: np.ndarray, enough: int = 6) -> int:
    """Distinct values in both windows, exact up to ``enough`` (only "above 5" matters).

    Evidently counts them with ``pd.concat(...).nunique()`` on every call; a short head of the
    data almost always proves the count is above 5 already, so the full count is rarely needed.
    """
    head = pd.unique(np.concatenate((reference[:512], current[:512])))
    if len(head) >= enough:
        return len(head)
    return int(pd.Series(np.concatenate((reference, current))).nunique())


@dataclass(frozen=True)
class CategoricalSide:
    """One window of a categorical column: counts of each value present, NaN and inf dropped."""

    counts: pd.Series
    rows: int

    @classmethod
    def of(cls, series: pd.Series, counts: pd.Series | None = None) -> CategoricalSide:
        """``counts`` is ``series.value_counts(dropna=True)`` when the caller already has it."""
        if counts is None:
            counts = series.value_counts(dropna=True, sort=False)
        keep = counts.to_numpy() > 0  # a category dtype lists categories that never occur
        if counts.index.dtype.kind in "fO":  # Evidently turns +/-inf into NaN before counting
            keep &= np.array([not _is_inf(key) for key in counts.index], dtype=bool)
        if not keep.all():
            counts = counts[keep]
        return cls(counts, int(counts.sum()))


def _is_inf(value: object) -> bool:
    return isinstance(value, float) and math.isinf(value)


def aligned_counts(
    reference: CategoricalSide, current: CategoricalSide
) -> tuple[list[object], np.ndarray, np.ndarray]:
    """The union of values of both windows and each window's count of every one of them."""
    ref = pd.Series(reference.counts.to_numpy(), index=reference.counts.index.astype(object))
    cur = pd.Series(current.counts.to_numpy(), index=current.counts.index.astype(object))
    keys = ref.index.union(cur.index, sort=False)
    ref_counts = ref.reindex(keys, fill_value=0).to_numpy(dtype=np.int64)
    cur_counts = cur.reindex(keys, fill_value=0).to_numpy(dtype=np.int64)
    return list(keys), ref_counts, cur_counts
