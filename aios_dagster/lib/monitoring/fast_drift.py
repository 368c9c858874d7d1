"""Data drift with Evidently's verdicts at a fraction of its cost: the entry point.

``compute_drift(reference, current, ...)`` returns, for every column Evidently's
``Report([DataDriftPreset(...)])`` would check, the same method, threshold, score and verdict,
and the dataset verdict of its ``DriftedColumnsCount``. It never approximates: the tests
Evidently picks by default are recomputed exactly, a score within a hair of its threshold and
every other method go to Evidently's own function. The HTML report remains Evidently's (see
:mod:`aios_dagster.lib.monitoring.drift`); this is for the numbers a check acts on.
"""

from __future__ import annotations

from aios_dagster.lib.monitoring.drift_stats.compute import NEAR_THRESHOLD, compute_drift
from aios_dagster.lib.monitoring.drift_stats.config import DriftConfig, DriftConfigError
from aios_dagster.lib.monitoring.drift_stats.methods import METHODS, ColumnKind, Method
from aios_dagster.lib.monitoring.drift_stats.results import ColumnDrift, DriftResult

__all__ = [
    "METHODS",
    "NEAR_THRESHOLD",
    "ColumnDrift",
    "ColumnKind",
    "DriftConfig",
    "DriftConfigError",
    "DriftResult",
    "Method",
    "compute_drift",
]
