"""Evidently reports that ML teams review: feature drift, prediction drift, labelled quality.

A check acts on :mod:`~aios_dagster.lib.monitoring.fast_drift`'s numbers; these reports are the
evidence a person reads (HTML, JSON) and what the Evidently workspace charts over time
(:mod:`~aios_dagster.lib.monitoring.workspace`), so every report carries a kind tag
(``features``, ``predictions``, ``quality``) that the workspace's dashboard selects on, and the
caller's timestamp (the partition day) rather than the time it was computed.

The headline values are read back from the structured fields Evidently 0.7 writes (each
metric's ``config`` and the tests' ``metric_config``), never parsed out of ``metric_name``:
its parameter order changes when a threshold or method is set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pandas as pd

from aios_dagster.lib.monitoring.fast_drift import METHODS, DriftConfig

if TYPE_CHECKING:
    from evidently.core.report import Snapshot

FEATURES_TAG = "features"
PREDICTIONS_TAG = "predictions"
QUALITY_TAG = "quality"

_NO_METADATA: Mapping[str, str] = MappingProxyType({})
_METRIC = "evidently:metric_v2:"


@dataclass(frozen=True)
class ReportColumnDrift:
    """One column's drift as an Evidently drift report recorded it."""

    column: str
    method: str
    """The test's display name (``"K-S p_value"``), whether Evidently picked it or it was set."""
    threshold: float
    score: float
    drifted: bool


def feature_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    settings: Mapping[str, Any],
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] = _NO_METADATA,
    timestamp: datetime | None = None,
    numerical_columns: Sequence[str] | None = None,
    categorical_columns: Sequence[str] | None = None,
) -> Snapshot:
    """Evidently's ``DataDriftPreset`` of ``current`` against ``reference``, tagged ``features``.

    ``settings`` are the preset's keyword settings (:class:`DriftConfig`'s fields); they are
    validated first, and per-column settings must name a column being compared, because
    Evidently ignores an unknown one and the column would go unmonitored. Columns named in
    ``numerical_columns``/``categorical_columns`` are typed as given (an integer code with few
    values is otherwise categorical); the others are typed by Evidently from the data.
    ``timestamp`` is the run's time on the dashboard (the day evaluated; an aware time is stored
    as naive UTC, as Evidently stamps runs itself).
    """
    return _drift_report(
        FEATURES_TAG,
        reference,
        current,
        settings=settings,
        tags=tags,
        metadata=metadata,
        timestamp=timestamp,
        numerical_columns=numerical_columns,
        categorical_columns=categorical_columns,
    )


def prediction_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    settings: Mapping[str, Any],
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] = _NO_METADATA,
    timestamp: datetime | None = None,
    numerical_columns: Sequence[str] | None = None,
    categorical_columns: Sequence[str] | None = None,
) -> Snapshot:
    """The same report as :func:`feature_drift_report` over prediction columns (each head's
    label, categorical, and its confidence, numerical), tagged ``predictions`` so the dashboard
    charts it apart from feature drift."""
    return _drift_report(
        PREDICTIONS_TAG,
        reference,
        current,
        settings=settings,
        tags=tags,
        metadata=metadata,
        timestamp=timestamp,
        numerical_columns=numerical_columns,
        categorical_columns=categorical_columns,
    )


def quality_report(
    frame: pd.DataFrame,
    *,
    heads: Mapping[str, tuple[str, str]],
    tags: Sequence[str] = (),
    metadata: Mapping[str, str] = _NO_METADATA,
    timestamp: datetime | None = None,
) -> Snapshot:
    """Evidently's multiclass ``ClassificationPreset`` per head on labelled rows, tagged
    ``quality``.

    ``heads`` maps a head's name to its (target column, predicted-label column). All heads share
    one report: each is a named classification of the data definition and its metrics carry
    ``classification_name=<head>``. Each head's accuracy and F1 are tested against Evidently's
    dummy baseline (labels drawn at random with the targets' shares), which is also in the
    report. Evidently's own default tests are off: in 0.7.23 they compute that baseline for the
    classification named ``default`` whatever head they belong to, and fail for any other name.

    Raises ``ValueError`` naming the head for an empty frame, a missing column, a row with no
    target or no prediction (quality is for labelled, scored rows: filter first), and a head
    whose targets and predictions hold exactly two distinct labels: Evidently 0.7.23 then scores
    it as a binary problem with positive label ``1`` (a ``KeyError`` for string labels, and a
    one-class F1 for 0/1 labels), which is not the multiclass quality asked for.
    """
    from evidently import DataDefinition, Dataset, MulticlassClassification, Report
    from evidently.metrics import DummyAccuracy, DummyF1Score
    from evidently.presets import ClassificationPreset
    from evidently.tests.numerical_tests import GreaterThanMetricTest

    if not heads:
        raise ValueError("quality needs at least one head: heads is empty")
    if frame.empty:
        raise ValueError(f"quality needs labelled rows: the frame is empty (heads {sorted(heads)})")
    for head, (target, prediction) in heads.items():
        _check_head(frame, head, target, prediction)
    label_columns = sorted({c for pair in heads.values() for c in pair})
    definition = DataDefinition(
        categorical_columns=label_columns,
        classification=[
            MulticlassClassification(name=head, target=target, prediction_labels=prediction)
            for head, (target, prediction) in heads.items()
        ],
    )
    data = frame[label_columns]
    baseline_items: list[Any] = [
        metric(classification_name=head)
        for head in heads
        for metric in (DummyAccuracy, DummyF1Score)
    ]
    baseline_run = Report(baseline_items).run(Dataset.from_pandas(data, data_definition=definition))
    baseline = snapshot_metric_values(baseline_run)
    items: list[Any] = [
        ClassificationPreset(
            classification_name=head,
            accuracy_tests=[
                GreaterThanMetricTest(
                    threshold=baseline[f"{head}.dummy_accuracy"],
                    alias=f"{head} accuracy vs dummy baseline",
                )
            ],
            f1score_tests=[
                GreaterThanMetricTest(
                    threshold=baseline[f"{head}.dummy_f1"], alias=f"{head} F1 vs dummy baseline"
                )
            ],
        )
        for head in heads
    ]
    items += baseline_items
    report = Report(
        items, include_tests=False, tags=_tags(QUALITY_TAG, tags), metadata=dict(metadata)
    )
    return report.run(
        Dataset.from_pandas(data, data_definition=definition),
        timestamp=_naive_utc(timestamp),
        name=_name("quality", timestamp),
    )


def save_report(snapshot: Snapshot, out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.html`` (self-contained, for people) and ``<stem>.json`` (metrics and
    tests, for tools) into ``out_dir``; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / f"{stem}.html", out_dir / f"{stem}.json"
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))
    return html_path, json_path


def snapshot_metric_values(snapshot: Snapshot | Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of a report (a snapshot, or its ``dict()``/saved JSON).

    Drift reports: ``drifted_columns.count`` and ``drifted_columns.share``. Quality reports,
    per head: ``<head>.accuracy``, ``<head>.f1``, ``<head>.precision``, ``<head>.recall``
    (macro averages) and ``<head>.dummy_accuracy``, ``<head>.dummy_f1`` (the baseline).
    """
    per_head = {
        "Accuracy": "accuracy",
        "F1Score": "f1",
        "Precision": "precision",
        "Recall": "recall",
        "DummyAccuracy": "dummy_accuracy",
        "DummyF1Score": "dummy_f1",
    }
    values: dict[str, float] = {}

    def put(key: str, value: Any) -> None:
        if key in values:
            raise ValueError(f"the report holds {key} twice; read it per metric instead")
        values[key] = float(value)

    for metric in _metrics(snapshot):
        config = metric["config"]
        kind = str(config["type"]).removeprefix(_METRIC)
        if kind == "DriftedColumnsCount":
            put("drifted_columns.count", metric["value"]["count"])
            put("drifted_columns.share", metric["value"]["share"])
        elif kind in per_head:
            put(f"{config.get('classification_name', 'default')}.{per_head[kind]}", metric["value"])
    return values


def drift_columns(snapshot: Snapshot | Mapping[str, Any]) -> dict[str, ReportColumnDrift]:
    """Every column a drift report checked, in report order: method, threshold, score and the
    verdict of its ``ValueDrift`` test (linked by metric id, not by the test's name)."""
    data = _as_dict(snapshot)
    failed: dict[str, bool] = {}
    for test in data.get("tests", []):
        params = test["metric_config"]["params"]
        if str(params["type"]).removeprefix(_METRIC) == "ValueDrift":
            failed[test["metric_config"]["metric_id"]] = str(test["status"]).endswith("FAIL")
    columns: dict[str, ReportColumnDrift] = {}
    for metric in data["metrics"]:
        config = metric["config"]
        if str(config["type"]).removeprefix(_METRIC) != "ValueDrift":
            continue
        if metric["id"] not in failed:
            raise ValueError(
                f"column {config['column']!r} has no drift test: build the report with tests"
            )
        method = str(config["method"])
        columns[config["column"]] = ReportColumnDrift(
            column=config["column"],
            method=METHODS[method].display_name if method in METHODS else method,
            threshold=float(config["threshold"]),
            score=float(metric["value"]),
            drifted=failed[metric["id"]],
        )
    return columns


def _drift_report(
    kind: str,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    settings: Mapping[str, Any],
    tags: Sequence[str],
    metadata: Mapping[str, str],
    timestamp: datetime | None,
    numerical_columns: Sequence[str] | None,
    categorical_columns: Sequence[str] | None,
) -> Snapshot:
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise ValueError(
            f"{kind} drift needs both windows: reference has {len(reference)} rows, "
            f"current has {len(current)}"
        )
    config = DriftConfig.of(**dict(settings))
    shared = [c for c in current.columns if c in set(reference.columns)]
    config.check_columns(list(config.columns) if config.columns is not None else shared)
    typed = [*(numerical_columns or ()), *(categorical_columns or ())]
    for column in typed:
        if column not in shared:
            raise ValueError(f"{kind} drift: typed column {column!r} is not in both windows")
    preset = dict(settings)
    if preset.get("columns") is not None:
        preset["columns"] = list(preset["columns"])
    report = Report(
        [DataDriftPreset(**preset)],
        include_tests=True,
        tags=_tags(kind, tags),
        metadata=dict(metadata),
    )
    ref: Any = reference
    cur: Any = current
    if typed:
        definition = DataDefinition(
            numerical_columns=list(numerical_columns) if numerical_columns is not None else None,
            categorical_columns=(
                list(categorical_columns) if categorical_columns is not None else None
            ),
        )
        ref = Dataset.from_pandas(reference, data_definition=definition)
        cur = Dataset.from_pandas(current, data_definition=definition)
    title = "feature drift" if kind == FEATURES_TAG else "prediction drift"
    return report.run(cur, ref, timestamp=_naive_utc(timestamp), name=_name(title, timestamp))


def binary_looking(frame: pd.DataFrame, target: str, prediction: str) -> bool:
    """Whether targets and predictions hold exactly two labels: Evidently 0.7.23 then scores
    the head as binary with positive label ``1``, not as the multiclass quality asked for."""
    return len(set(frame[target].unique()) | set(frame[prediction].unique())) == 2


def _check_head(frame: pd.DataFrame, head: str, target: str, prediction: str) -> None:
    for role, column in (("target", target), ("prediction", prediction)):
        if column not in frame.columns:
            raise ValueError(f"head {head!r}: {role} column {column!r} is not in the frame")
        missing = int(frame[column].isna().sum())
        if missing:
            raise ValueError(
                f"head {head!r}: {missing} of {len(frame)} rows have no {role} ({column!r}); "
                "quality is measured on labelled, scored rows only: filter them first"
            )
    if binary_looking(frame, target, prediction):
        labels = set(frame[target].unique()) | set(frame[prediction].unique())
        raise ValueError(
            f"head {head!r}: targets and predictions hold exactly two labels "
            f"{sorted(map(str, labels))}; Evidently 0.7.23 scores that as binary with positive "
            "label 1, not as multiclass"
        )


def _metrics(snapshot: Snapshot | Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(_as_dict(snapshot)["metrics"])


def _as_dict(snapshot: Snapshot | Mapping[str, Any]) -> Mapping[str, Any]:
    return snapshot if isinstance(snapshot, Mapping) else snapshot.dict()


def _tags(kind: str, extra: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([kind, *extra]))


def _naive_utc(timestamp: datetime | None) -> datetime | None:
    """Evidently stamps runs with a naive ``datetime.now()``, and the UI sorts a project's runs
    by timestamp: one timezone-aware run among naive ones makes that sort raise."""
    if timestamp is None or timestamp.tzinfo is None:
        return timestamp
    return timestamp.astimezone(UTC).replace(tzinfo=None)


def _name(what: str, timestamp: datetime | None) -> str:
    return what if timestamp is None else f"{what} {timestamp:%Y-%m-%d}"
