"""A model's monitoring as declared under ``drift:`` in its ``defs.yaml``, validated on load.

Evidently accepts per-column methods and thresholds for columns it never analyses and any
threshold at all (evidently#678: a typo silently turns a column's drift check off). Here every
setting goes through :class:`~aios_dagster.lib.monitoring.fast_drift.DriftConfig` when the code
location loads, and per-column names must be columns the model actually monitors, so a bad
config fails the load naming the file and the field instead of hiding drift for good.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aios_dagster.lib.monitoring.drift_stats.config import DriftConfig, DriftConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowConfig(_Strict):
    """The windows a partition day is judged on.

    ``current``: the ``current_days`` ending on the partition's day (a day's drift is its own
    week's, wherever the newest landed data is). ``reference``: ``sliding`` is the
    ``reference_days`` right before the current window; ``fixed`` is a baseline from
    ``reference_start`` to ``reference_end`` (inclusive), e.g. the training period.
    """

    current_days: int = 7
    reference: Literal["sliding", "fixed"] = "sliding"
    reference_days: int = 7
    # ISO dates as text: Dagster's Resolvable takes no ``date`` fields.
    reference_start: str | None = None
    reference_end: str | None = None

    @property
    def baseline(self) -> tuple[date, date]:
        """The fixed reference window's first and last day."""
        if self.reference_start is None or self.reference_end is None:
            raise ValueError("reference: fixed needs reference_start and reference_end")
        return date.fromisoformat(self.reference_start), date.fromisoformat(self.reference_end)

    @model_validator(mode="after")
    def _fixed_has_dates(self) -> WindowConfig:
        # Plain ints (not ``Field(ge=...)``): Dagster's Resolvable rejects constrained types.
        for name in ("current_days", "reference_days"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        dates = (self.reference_start, self.reference_end)
        if self.reference == "fixed":
            try:
                first, last = self.baseline
            except (TypeError, ValueError) as exc:
                raise ValueError(f"reference_start/reference_end: {exc}") from None
            if last < first:
                raise ValueError("reference_end is before reference_start")
        elif dates != (None, None):
            raise ValueError("reference_start/reference_end only apply to reference: fixed")
        return self


class DriftSettings(_Strict):
    """``DataDriftPreset``'s settings that decide verdicts, with Evidently's meaning."""

    drift_share: float = 0.5
    method: str | None = None
    num_method: str | None = None
    cat_method: str | None = None
    threshold: float | None = None
    num_threshold: float | None = None
    cat_threshold: float | None = None
    per_column_method: dict[str, str] = Field(default_factory=dict)
    per_column_threshold: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _valid(self) -> DriftSettings:
        try:
            DriftConfig.of(**self.preset_settings())
        except DriftConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def preset_settings(self) -> dict[str, Any]:
        """The settings given (none of Evidently's defaults restated), as keyword arguments."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if value is not None and value != {}
        }

    def check_columns(self, monitored: list[str], where: str) -> None:
        for name in ("per_column_method", "per_column_threshold"):
            stray = sorted(set(getattr(self, name)) - set(monitored))
            if stray:
                raise ValueError(
                    f"{where}.{name}: {stray} are not monitored columns (monitored: {monitored})"
                )


class QualityConfig(_Strict):
    """Classification quality of past decisions once agents' labels arrive.

    The check compares each head's accuracy on the labelled rows of the window with the gate's
    accuracy floor for that head; below ``min_labelled_rows`` it has too little evidence to
    fail and says so.
    """

    min_labelled_rows: int = 200

    @model_validator(mode="after")
    def _positive(self) -> QualityConfig:
        if self.min_labelled_rows < 1:
            raise ValueError(f"min_labelled_rows must be at least 1, not {self.min_labelled_rows}")
        return self


class RetrainConfig(_Strict):
    """What a failed drift check does: request the model's retraining job (into shadow)."""

    on_feature_drift: bool = True
    on_prediction_drift: bool = False


class MonitoringConfig(_Strict):
    window: WindowConfig = Field(default_factory=WindowConfig)
    features: DriftSettings = Field(default_factory=lambda: DriftSettings(drift_share=0.3))
    predictions: DriftSettings = Field(default_factory=DriftSettings)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)


@dataclass(frozen=True)
class Windows:
    """One partition day's windows, first and last day inclusive."""

    day: date
    current: tuple[date, date]
    reference: tuple[date, date]

    @property
    def first(self) -> date:
        return min(self.current[0], self.reference[0])

    @property
    def last(self) -> date:
        return max(self.current[1], self.reference[1])

    @property
    def timestamp(self) -> datetime:
        """The day judged, as the reports' timestamp (the dashboard orders runs by it)."""
        return datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)

    def labels(self) -> dict[str, str]:
        return {
            "current_window": f"{self.current[0]}..{self.current[1]}",
            "reference_window": f"{self.reference[0]}..{self.reference[1]}",
        }


@dataclass(frozen=True)
class MonitoringSpec:
    """The validated monitoring of one model (what the assets, checks and sensor read)."""

    window: WindowConfig = field(default_factory=WindowConfig)
    features: DriftSettings = field(default_factory=lambda: DriftSettings(drift_share=0.3))
    predictions: DriftSettings = field(default_factory=DriftSettings)
    quality: QualityConfig = field(default_factory=QualityConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)

    @classmethod
    def of(cls, config: MonitoringConfig) -> MonitoringSpec:
        return cls(
            window=config.window,
            features=config.features,
            predictions=config.predictions,
            quality=config.quality,
            retrain=config.retrain,
        )

    def windows(self, day: date) -> Windows:
        """The windows partition ``day`` is judged on (anchored on it, not on newest data)."""
        w = self.window
        current = (day - timedelta(days=w.current_days - 1), day)
        if w.reference == "fixed":
            return Windows(day, current, w.baseline)
        end = current[0] - timedelta(days=1)
        return Windows(day, current, (end - timedelta(days=w.reference_days - 1), end))


def prediction_columns(heads: list[str]) -> list[str]:
    """The prediction columns drift is measured on: each head's label and confidence."""
    return [c for head in heads for c in (head, f"{head}_confidence")]
