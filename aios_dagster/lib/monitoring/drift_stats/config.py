"""Drift configuration as Evidently's ``DataDriftPreset`` takes it, validated before any work.

Evidently resolves a column's method and threshold independently, each from the most specific
setting given: ``per_column_*`` first, then the column type's (``num_*``/``cat_*``/``text_*``),
then the all-columns one, then the method's own default. It silently ignores per-column entries
for columns it does not analyse and accepts any threshold; here both are errors that name the
column and the field, because a typo in a monitoring config otherwise hides drift for good.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aios_dagster.lib.monitoring.drift_stats.methods import (
    EVIDENTLY_KIND,
    METHODS,
    ColumnKind,
    Method,
    default_method,
)


class DriftConfigError(ValueError):
    """A drift setting that cannot be used; ``field`` and ``column`` say which one."""

    def __init__(self, field_name: str, column: str | None, problem: str) -> None:
        self.field = field_name
        self.column = column
        where = field_name if column is None else f"{field_name}[{column!r}]"
        super().__init__(f"drift config {where}: {problem}")


_TYPE_FIELD: dict[ColumnKind, str] = {"numerical": "num", "categorical": "cat", "text": "text"}


@dataclass(frozen=True)
class Resolved:
    """One column's method and threshold, and the settings they came from (for error messages)."""

    method: Method
    threshold: float
    method_field: str | None
    """None when Evidently's default selection picked the method."""
    threshold_field: str | None
    """None when the threshold is the method's default."""


@dataclass(frozen=True)
class DriftConfig:
    """The settings of Evidently's ``DataDriftPreset`` that decide verdicts, checked on creation."""

    columns: tuple[str, ...] | None = None
    method: str | None = None
    num_method: str | None = None
    cat_method: str | None = None
    text_method: str | None = None
    per_column_method: Mapping[str, str] = field(default_factory=dict)
    threshold: float | None = None
    num_threshold: float | None = None
    cat_threshold: float | None = None
    text_threshold: float | None = None
    per_column_threshold: Mapping[str, float] = field(default_factory=dict)
    drift_share: float = 0.5

    @classmethod
    def of(cls, **settings: Any) -> DriftConfig:
        """The config of ``DataDriftPreset``-style keyword settings; an unknown name is an error
        (Evidently would take a misspelt setting as absent and use its default)."""
        known = set(cls.__dataclass_fields__)
        for name in settings:
            if name not in known:
                raise DriftConfigError(name, None, f"not a drift setting; known: {sorted(known)}")
        if settings.get("columns") is not None:
            settings["columns"] = tuple(settings["columns"])
        for name in ("per_column_method", "per_column_threshold"):
            settings[name] = dict(settings.get(name) or {})
        return cls(**settings)

    def __post_init__(self) -> None:
        if self.columns is not None and len(set(self.columns)) != len(self.columns):
            raise DriftConfigError("columns", None, f"names repeat: {list(self.columns)}")
        for name in ("method", "num_method", "cat_method", "text_method"):
            _check_method_name(name, None, getattr(self, name))
        for column, method in self.per_column_method.items():
            _check_method_name("per_column_method", column, method)
        for name in ("threshold", "num_threshold", "cat_threshold", "text_threshold"):
            _check_threshold_value(name, None, getattr(self, name))
        for column, threshold in self.per_column_threshold.items():
            _check_threshold_value("per_column_threshold", column, threshold)
        share = self.drift_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 1:
            raise DriftConfigError("drift_share", None, f"must be in (0, 1], got {share!r}")

    def check_columns(self, analysed: list[str]) -> None:
        """Per-column settings must name analysed columns: anything else is a typo."""
        known = set(analysed)
        for name in ("per_column_method", "per_column_threshold"):
            for column in getattr(self, name):
                if column not in known:
                    raise DriftConfigError(
                        name, column, f"no such column among those analysed: {sorted(known)}"
                    )

    def resolve(
        self, column: str, kind: ColumnKind, reference_rows: int, distinct_values: int
    ) -> Resolved:
        """``column``'s method and threshold, as Evidently's ``DataDriftOptions`` resolves them."""
        prefix = _TYPE_FIELD[kind]
        method_field = _most_specific(
            self, column, "per_column_method", f"{prefix}_method", "method"
        )
        if method_field is None:
            method = default_method(kind, reference_rows, distinct_values)
        else:
            method = METHODS[self._value(method_field, column)]
            if kind not in method.kinds:
                kinds = ", ".join(sorted(method.kinds))
                raise DriftConfigError(
                    method_field,
                    column,
                    f"{method.name!r} does not apply to {kind} columns ({EVIDENTLY_KIND[kind]}); "
                    f"it takes: {kinds}",
                )
        threshold_field = _most_specific(
            self, column, "per_column_threshold", f"{prefix}_threshold", "threshold"
        )
        threshold = method.default_threshold
        if threshold_field is not None:
            threshold = float(self._value(threshold_field, column))
            problem = method.threshold_problem(threshold)
            if problem is not None:
                raise DriftConfigError(threshold_field, column, problem)
        return Resolved(method, threshold, method_field, threshold_field)

    def _value(self, name: str, column: str) -> Any:
        value = getattr(self, name)
        return value[column] if name.startswith("per_column") else value


def _most_specific(config: DriftConfig, column: str, *names: str) -> str | None:
    for name in names:
        value = getattr(config, name)
        if name.startswith("per_column") and column in value:
            return name
        if not name.startswith("per_column") and value is not None:
            return name
    return None


def _check_method_name(name: str, column: str | None, method: object) -> None:
    if method is None and column is None:
        return
    if not isinstance(method, str) or method not in METHODS:
        raise DriftConfigError(
            name, column, f"unknown drift method {method!r}; Evidently knows {sorted(METHODS)}"
        )


def _check_threshold_value(name: str, column: str | None, threshold: object) -> None:
    if threshold is None and column is None:
        return
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or threshold <= 0
    ):
        raise DriftConfigError(
            name, column, f"threshold must be a finite number above 0, got {threshold!r}"
        )
