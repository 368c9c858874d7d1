"""Drift of every column, decided as ``Report([DataDriftPreset(...)])`` decides it, computed once.

Evidently's preset computes each column's test three times (``ValueDrift``, the legacy
``DatasetDriftMetric`` behind ``DriftedColumnsCount``, and ``DataDriftTable`` for the HTML),
each time with correlations, histograms and plotly figures around it. This computes each column
once, with only what its test needs, in a thread pool (numpy's sorts release the GIL). The
HTML report stays Evidently's: render it with Evidently when someone will read it.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd

from aios_dagster.lib.monitoring.drift_stats import evidently_tests, stats
from aios_dagster.lib.monitoring.drift_stats.columns import (
    CategoricalSide,
    NumericSide,
    aligned_counts,
    distinct_count,
    drift_columns,
    typed,
)
from aios_dagster.lib.monitoring.drift_stats.config import DriftConfig, DriftConfigError, Resolved
from aios_dagster.lib.monitoring.drift_stats.methods import ColumnKind
from aios_dagster.lib.monitoring.drift_stats.results import ColumnDrift, DriftResult, Engine

NEAR_THRESHOLD = 1e-7
"""Relative distance from the threshold below which Evidently's own function decides.

The fast scores match Evidently's to the last bit or two of floating-point rounding; a score
that close to its threshold is rechecked rather than trusted to land on the same side."""

JS_BINNED_ABOVE = 20
"""Evidently bins a numerical column for Jensen-Shannon when the reference has more values."""


def compute_drift(
    reference: Any, current: Any, *, workers: int | None = None, **settings: Any
) -> DriftResult:
    """Drift of ``current`` against ``reference`` (pandas DataFrames or pyarrow Tables).

    ``settings`` are ``DataDriftPreset``'s (the fields of :class:`DriftConfig`: ``columns``,
    ``method``, ``num_method``, ``per_column_method``, ``threshold``, ``per_column_threshold``,
    ``drift_share``, ...) and mean what they mean there; they are validated first
    (:class:`DriftConfigError` names the field and column). Columns are typed from ``current``
    as Evidently types them; ``workers`` threads share the columns.
    """
    config = DriftConfig.of(**settings)
    ref, cur = _frame(reference, "reference"), _frame(current, "current")
    analysed = _analysed_columns(config, ref, cur)
    config.check_columns([name for name, _, _ in analysed])
    workers = workers or min(os.cpu_count() or 1, 4)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(analysed)))) as pool:
        futures = [
            pool.submit(_column, name, kind, ref[name], cur[name], config, counts)
            for name, kind, counts in analysed
        ]
        verdicts = [future.result() for future in futures]
    return DriftResult(tuple(verdicts), float(config.drift_share), len(ref), len(cur))


def _frame(data: Any, side: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        import pyarrow as pa

        if not isinstance(data, pa.Table):
            raise TypeError(f"{side} must be a pandas DataFrame or pyarrow Table, not {type(data)}")
        data = data.to_pandas()
    if data.empty:
        raise ValueError(f"{side} data is empty: {data.shape[0]} rows, {data.shape[1]} columns")
    return data


def _analysed_columns(
    config: DriftConfig, ref: pd.DataFrame, cur: pd.DataFrame
) -> list[tuple[str, ColumnKind, pd.Series | None]]:
    """The columns to check, their types and, for string columns, the current value counts."""
    if config.columns is None:
        analysed = drift_columns(cur)
    else:
        analysed = []
        for name in config.columns:
            if name not in cur.columns:
                raise DriftConfigError("columns", name, "not a column of the current data")
            kind, counts = typed(cur[name])
            if kind is None:
                raise DriftConfigError(
                    "columns", name, f"Evidently computes no drift for dtype {cur[name].dtype}"
                )
            analysed.append((name, kind, counts))
    if not analysed:
        raise ValueError("no numerical, categorical or text columns to check for drift")
    for name, _, _ in analysed:
        if name not in ref.columns:
            raise ValueError(f"Cannot find column '{name}' in reference dataset")
    return analysed


def _column(
    name: str,
    kind: ColumnKind,
    reference: pd.Series,
    current: pd.Series,
    config: DriftConfig,
    current_counts: pd.Series | None,
) -> ColumnDrift:
    if kind == "numerical":
        for side, series in (("reference", reference), ("current", current)):
            if not pd.api.types.is_numeric_dtype(series):
                raise ValueError(
                    f"Column '{name}' in {side} dataset should contain numerical values only."
                )
        ref_num, cur_num = NumericSide.of(reference), NumericSide.of(current)
        _not_empty(name, len(ref_num.values), len(cur_num.values))
        distinct = distinct_count(ref_num.values, cur_num.values)
        resolved = config.resolve(name, kind, len(ref_num.values), distinct)
        score = _numeric_score(resolved, ref_num, cur_num)
        keeps_inf = (ref_num.had_inf and not ref_num.had_nan) or (
            cur_num.had_inf and not cur_num.had_nan
        )
    elif kind == "categorical":
        ref_cat = CategoricalSide.of(reference)
        cur_cat = CategoricalSide.of(current, current_counts)
        _not_empty(name, ref_cat.rows, cur_cat.rows)
        keys, ref_counts, cur_counts = aligned_counts(ref_cat, cur_cat)
        resolved = config.resolve(name, kind, ref_cat.rows, len(keys))
        score = _categorical_score(resolved, keys, ref_counts, cur_counts)
        keeps_inf = False
    else:
        rows = int(reference.notna().sum())
        _not_empty(name, rows, int(current.notna().sum()))
        resolved = config.resolve(name, kind, rows, 0)
        score, keeps_inf = None, False
    return _decide(name, kind, reference, current, resolved, score, keeps_inf)


def _not_empty(name: str, reference_rows: int, current_rows: int) -> None:
    for side, rows in (("reference", reference_rows), ("current", current_rows)):
        if rows == 0:
            raise ValueError(
                f"An empty column '{name}' was provided for drift calculation "
                f"in the {side} dataset."
            )


def _numeric_score(resolved: Resolved, ref: NumericSide, cur: NumericSide) -> float | None:
    name = resolved.method.name
    if name == "wasserstein":
        return stats.wasserstein_normed(ref, cur)
    if name == "ks":
        return stats.ks_p_value(ref.values, cur.values)
    if name == "jensenshannon" and distinct_count(ref.values, ref.values[:0], 21) > JS_BINNED_ABOVE:
        return stats.jensenshannon_numeric(ref.values, cur.values)
    if name in ("jensenshannon", "chisquare", "z"):
        keys, ref_counts, cur_counts = aligned_counts(
            CategoricalSide.of(pd.Series(ref.values)), CategoricalSide.of(pd.Series(cur.values))
        )
        return _categorical_score(resolved, keys, ref_counts, cur_counts)
    return None


def _categorical_score(
    resolved: Resolved, keys: list[object], ref_counts: Any, cur_counts: Any
) -> float | None:
    name = resolved.method.name
    if name == "jensenshannon":
        return stats.jensenshannon_counts(ref_counts, cur_counts)
    if name == "chisquare":
        return stats.chisquare_p_value(ref_counts, cur_counts)
    if name == "z":
        return stats.z_p_value(keys, ref_counts, cur_counts)
    return None


def _decide(
    name: str,
    kind: ColumnKind,
    reference: pd.Series,
    current: pd.Series,
    resolved: Resolved,
    score: float | None,
    keeps_inf: bool,
) -> ColumnDrift:
    """The verdict: the fast score's, unless it is missing or too close to call."""
    method, threshold = resolved.method, resolved.threshold
    # Evidently is asked by name only where the user named the method: its default pick can be
    # a test it would refuse by name (the Z-test on a numerical column).
    asked = method.name if resolved.method_field is not None else None
    engine: Engine = "numpy"
    near = score is not None and (
        not math.isfinite(score) or abs(score - threshold) <= NEAR_THRESHOLD * threshold
    )
    display = method.display_name
    if score is None or near:
        verdict = evidently_tests.value_drift(reference, current, kind, asked, threshold)
        display, score, drifted = verdict.method, verdict.score, verdict.drifted
        engine = "evidently"
    else:
        drifted = method.is_drift(score, threshold)
    counted = drifted
    if keeps_inf:
        configured = threshold if resolved.threshold_field is not None else None
        counted = evidently_tests.counted_as_drifted(reference, current, kind, asked, configured)
    return ColumnDrift(
        column=name,
        column_type=kind,
        method=display,
        method_id=method.name,
        threshold=threshold,
        score=score,
        drifted=drifted,
        engine=engine,
        near_threshold=near,
        counted=counted,
    )
