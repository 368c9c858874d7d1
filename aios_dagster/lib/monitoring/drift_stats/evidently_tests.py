"""Evidently's own stat-test functions, for what is not worth (or not safe) redoing here.

Three cases use them: methods other than the five computed here (PSI, text content drift, ...);
a fast score that lands within a hair of its threshold, where the last bit of floating-point
summation order could decide the verdict; and the count Evidently's ``DriftedColumnsCount``
makes, which (unlike ``ValueDrift``) keeps +/-inf in a window that has no NaN. Evidently is
imported here, lazily, because importing it takes seconds and the common path never needs it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from aios_dagster.lib.monitoring.drift_stats.columns import cleaned
from aios_dagster.lib.monitoring.drift_stats.methods import EVIDENTLY_KIND, ColumnKind


@dataclass(frozen=True)
class EvidentlyVerdict:
    method: str
    """Evidently's display name of the test that ran."""
    score: float
    drifted: bool


def run_stattest(
    reference: pd.Series,
    current: pd.Series,
    kind: ColumnKind,
    method: str | None,
    threshold: float | None,
) -> EvidentlyVerdict:
    """Run Evidently's stat test ``method`` (None: its default pick) on the series as given."""
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    column_type = ColumnType(EVIDENTLY_KIND[kind])
    test = get_stattest(reference, current, column_type, method)
    result = test(reference, current, column_type, threshold)
    return EvidentlyVerdict(test.display_name, float(result.drift_score), bool(result.drifted))


def value_drift(
    reference: pd.Series, current: pd.Series, kind: ColumnKind, method: str, threshold: float
) -> EvidentlyVerdict:
    """What Evidently's ``ValueDrift`` decides: the test on both windows, NaN and inf dropped."""
    return run_stattest(cleaned(reference), cleaned(current), kind, method, threshold)


def counted_as_drifted(
    reference: pd.Series,
    current: pd.Series,
    kind: ColumnKind,
    method: str | None,
    threshold: float | None,
) -> bool:
    """The verdict Evidently's ``DriftedColumnsCount`` counts for this column.

    Its legacy path drops NaN and inf from a window only when that window has a NaN, so a
    window with inf and no NaN reaches the test with its infinities (a Wasserstein score is
    then NaN, never drift). The method is picked again on those values, as Evidently does.
    """
    ref = cleaned(reference) if reference.isna().any() else reference
    cur = cleaned(current) if current.isna().any() else current
    return run_stattest(ref, cur, kind, method, threshold).drifted
