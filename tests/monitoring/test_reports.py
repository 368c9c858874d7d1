"""The Evidently reports people review say what the checks decided, on real Evidently.

A drifted synthetic pair goes through ``feature_drift_report`` and ``fast_drift.compute_drift``
with the same settings (per-column method and thresholds included): every column's method,
threshold, score and verdict must agree, and the thresholds must be in the saved JSON. The
quality report must give the accuracy counted here by hand, per head, and refuse rows that are
not labelled.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from aios_dagster.lib.monitoring.fast_drift import DriftConfigError, compute_drift
from aios_dagster.lib.monitoring.reports import (
    FEATURES_TAG,
    PREDICTIONS_TAG,
    QUALITY_TAG,
    drift_columns,
    feature_drift_report,
    prediction_drift_report,
    quality_report,
    save_report,
    snapshot_metric_values,
)

DAY = datetime(2026, 11, 20)
SETTINGS = {
    "per_column_method": {"tenure_years": "wasserstein"},
    "per_column_threshold": {"tenure_years": 0.2, "spend_30d": 0.01},
    "drift_share": 0.3,
}


@pytest.fixture(scope="module")
def drifted() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spend and channel drift, tenure a little (under its raised threshold), hour not at all."""
    rng = np.random.default_rng(11)
    n = 400

    def window(spend_shift: float, tenure_shift: float, channel_p: list[float]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "spend_30d": rng.gamma(2.0, 100.0, n) + spend_shift,
                "tenure_years": rng.normal(5.0, 2.0, n) + tenure_shift,
                "hour_of_day": rng.uniform(0, 24, n),
                "channel": rng.choice(["email", "web", "app"], n, p=channel_p),
            }
        )

    return window(0.0, 0.0, [0.5, 0.3, 0.2]), window(80.0, 0.3, [0.2, 0.3, 0.5])


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 150
    queue = rng.choice(["cards", "fraud", "loans", "general"], n)
    priority = rng.choice(["P1", "P2", "P3"], n)
    return pd.DataFrame(
        {
            "queue": queue,
            "queue_pred": np.where(rng.random(n) < 0.75, queue, "general"),
            "priority": priority,
            "priority_pred": np.where(rng.random(n) < 0.6, priority, "P2"),
        }
    )


HEADS = {"queue": ("queue", "queue_pred"), "priority": ("priority", "priority_pred")}


def test_feature_report_decides_every_column_as_fast_drift(drifted, tmp_path: Path) -> None:
    reference, current = drifted
    snapshot = feature_drift_report(
        reference, current, settings=SETTINGS, metadata={"model": "router"}, timestamp=DAY
    )
    fast = compute_drift(reference, current, **SETTINGS)
    columns = drift_columns(snapshot)
    assert list(columns) == [c.column for c in fast.columns]
    for ours in fast.columns:
        theirs = columns[ours.column]
        assert (theirs.method, theirs.threshold, theirs.drifted) == (
            ours.method,
            ours.threshold,
            ours.drifted,
        ), ours.column
        assert math.isclose(theirs.score, ours.score, rel_tol=1e-9, abs_tol=1e-12), ours.column
    # The pair is built so the verdicts differ by column and the settings matter.
    assert columns["spend_30d"].drifted and columns["channel"].drifted
    assert not columns["hour_of_day"].drifted
    assert columns["tenure_years"].method == "Wasserstein distance (normed)"
    assert not columns["tenure_years"].drifted  # drifts at the default 0.1, not at 0.2
    assert 0.1 <= columns["tenure_years"].score < 0.2
    values = snapshot_metric_values(snapshot)
    assert values == {
        "drifted_columns.count": fast.drifted_columns,
        "drifted_columns.share": fast.share,
    }

    html, saved = save_report(snapshot, tmp_path / "out", "feature_drift")
    assert (html.name, saved.name) == ("feature_drift.html", "feature_drift.json")
    assert "<html" in html.read_text()[:2000].lower()
    data = json.loads(saved.read_text())
    thresholds = {
        m["config"]["column"]: m["config"]["threshold"]
        for m in data["metrics"]
        if m["config"]["type"].endswith(":ValueDrift")
    }
    assert thresholds["spend_30d"] == 0.01 and thresholds["tenure_years"] == 0.2
    count = next(m for m in data["metrics"] if m["config"]["type"].endswith("DriftedColumnsCount"))
    assert count["config"]["per_column_threshold"] == SETTINGS["per_column_threshold"]
    assert snapshot_metric_values(data) == values  # the saved JSON reads the same

    model = snapshot.to_snapshot_model()
    assert model.tags == [FEATURES_TAG] and model.metadata == {"model": "router"}
    assert model.timestamp == DAY


def test_columns_are_typed_as_the_caller_says(drifted) -> None:
    reference, current = drifted
    # An hour bucket as an int with nine values: Evidently alone would call it categorical.
    reference = reference.assign(hour=(reference["hour_of_day"] // 3).astype("int64"))
    current = current.assign(hour=(current["hour_of_day"] // 3).astype("int64"))
    inferred = drift_columns(
        feature_drift_report(reference, current, settings={"columns": ["hour"]})
    )
    typed = drift_columns(
        feature_drift_report(
            reference,
            current,
            settings={"columns": ["hour"]},
            numerical_columns=["hour"],
            categorical_columns=[],
        )
    )
    assert inferred["hour"].method == "chi-square p_value"
    assert typed["hour"].method == "K-S p_value"


def test_prediction_report_is_tagged_for_its_panel(drifted) -> None:
    reference, current = drifted
    snapshot = prediction_drift_report(
        reference[["channel"]],
        current[["channel"]],
        settings={"drift_share": 0.5},
        tags=["router", PREDICTIONS_TAG],
        timestamp=datetime(2026, 11, 20, 1, 30, tzinfo=timezone(timedelta(hours=1, minutes=30))),
    )
    model = snapshot.to_snapshot_model()
    assert (model.tags, model.timestamp) == ([PREDICTIONS_TAG, "router"], DAY)  # naive UTC
    assert snapshot_metric_values(snapshot) == {
        "drifted_columns.count": 1.0,
        "drifted_columns.share": 1.0,
    }


def test_drift_settings_are_checked_before_any_work(drifted) -> None:
    reference, current = drifted
    with pytest.raises(DriftConfigError, match=r"per_column_threshold\['spend'\]"):
        feature_drift_report(reference, current, settings={"per_column_threshold": {"spend": 0.1}})
    with pytest.raises(DriftConfigError, match="drift_shares"):
        feature_drift_report(reference, current, settings={"drift_shares": 0.2})
    with pytest.raises(ValueError, match="reference has 0 rows"):
        feature_drift_report(reference.iloc[:0], current, settings={})
    with pytest.raises(ValueError, match="'nope' is not in both windows"):
        feature_drift_report(reference, current, settings={}, numerical_columns=["nope"])


def test_quality_report_gives_each_heads_accuracy_and_f1(labelled, tmp_path: Path) -> None:
    snapshot = quality_report(labelled, heads=HEADS, metadata={"model": "router"}, timestamp=DAY)
    values = snapshot_metric_values(snapshot)
    for head, (target, prediction) in HEADS.items():
        right = sum(t == p for t, p in zip(labelled[target], labelled[prediction], strict=True))
        assert values[f"{head}.accuracy"] == pytest.approx(right / len(labelled))
        macro_f1 = f1_score(labelled[target], labelled[prediction], average="macro")
        assert values[f"{head}.f1"] == pytest.approx(macro_f1)
        assert 0 < values[f"{head}.dummy_accuracy"] < values[f"{head}.accuracy"]
    assert values["queue.accuracy"] != values["priority.accuracy"]
    tests = snapshot.dict()["tests"]
    assert len(tests) == 4 and all(str(t["status"]).endswith("SUCCESS") for t in tests)
    assert any(t["description"].startswith("priority F1 vs dummy baseline") for t in tests)
    model = snapshot.to_snapshot_model()
    assert (model.tags, model.timestamp) == ([QUALITY_TAG], DAY)
    _, saved = save_report(snapshot, tmp_path, "quality")
    assert snapshot_metric_values(json.loads(saved.read_text())) == values


def test_quality_refuses_rows_that_are_not_labelled(labelled) -> None:
    unlabelled = labelled.astype({"priority": object})
    unlabelled.loc[3, "priority"] = None
    with pytest.raises(ValueError, match=r"head 'priority': 1 of 150 rows have no target"):
        quality_report(unlabelled, heads=HEADS)
    with pytest.raises(ValueError, match="the frame is empty"):
        quality_report(labelled.iloc[:0], heads=HEADS)
    with pytest.raises(ValueError, match=r"head 'queue': target column 'label'"):
        quality_report(labelled, heads={"queue": ("label", "queue_pred")})
    two = labelled[labelled["queue"].isin(["cards", "general"])]
    with pytest.raises(ValueError, match=r"head 'queue': .* exactly two labels"):
        quality_report(two, heads={"queue": ("queue", "queue_pred")})
