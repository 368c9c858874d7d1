"""What a drift computation returns: Evidently's per-column verdicts and its dataset rule."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from aios_dagster.lib.monitoring.drift_stats.methods import ColumnKind

Engine = Literal["numpy", "evidently"]


@dataclass(frozen=True)
class ColumnDrift:
    """One column's drift, named and decided as Evidently's ``ValueDrift`` names and decides it."""

    column: str
    column_type: ColumnKind
    method: str
    """Evidently's display name of the test (``"Wasserstein distance (normed)"``)."""
    method_id: str
    """Evidently's registry name, as ``per_column_method`` takes it (``"wasserstein"``)."""
    threshold: float
    score: float
    drifted: bool
    engine: Engine
    """Who computed the verdict: numpy/scipy here, or Evidently's own stat-test function."""
    near_threshold: bool
    """The fast score sat within a hair of the threshold, so Evidently's function decided."""
    counted: bool
    """Whether Evidently's ``DriftedColumnsCount`` counts the column as drifted: the same as
    ``drifted`` except for a window with +/-inf and no NaN, which that count does not clean."""


@dataclass(frozen=True)
class DriftResult:
    """Every analysed column's verdict and the dataset verdict Evidently derives from them."""

    columns: tuple[ColumnDrift, ...]
    drift_share: float
    """The share of drifted columns at which the dataset counts as drifted."""
    reference_rows: int
    current_rows: int

    @property
    def drifted_columns(self) -> int:
        """Evidently's ``DriftedColumnsCount`` count."""
        return sum(c.counted for c in self.columns)

    @property
    def share(self) -> float:
        """Evidently's ``DriftedColumnsCount`` share: drifted columns over analysed columns."""
        return self.drifted_columns / len(self.columns) if self.columns else 0.0

    @property
    def dataset_drift(self) -> bool:
        """Evidently's rule: drifted when the share reaches ``drift_share`` (its test fails)."""
        return bool(self.columns) and self.share >= self.drift_share

    def column(self, name: str) -> ColumnDrift:
        for column in self.columns:
            if column.column == name:
                return column
        raise KeyError(f"column {name!r} was not analysed: {[c.column for c in self.columns]}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drifted_columns": self.drifted_columns,
            "share": self.share,
            "drift_share": self.drift_share,
            "dataset_drift": self.dataset_drift,
            "columns": [asdict(c) for c in self.columns],
        }
