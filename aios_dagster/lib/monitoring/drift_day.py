"""One partition day's drift: verdicts on every row, Evidently's report, a workspace run.

The verdicts (what the checks act on) come from :func:`fast_drift.compute_drift`, which decides
each column as Evidently's ``DataDriftPreset`` does at a fraction of its cost. The report a
person reads stays Evidently's own, rendered from the same windows and settings (on a seeded
sample when a window is larger than the store allows) and added to the model's project in the
Evidently workspace, so the dashboard shows drift over the days evaluated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.monitoring.drift_config import DriftSettings, Windows
from aios_dagster.lib.monitoring.fast_drift import DriftResult, compute_drift
from aios_dagster.lib.monitoring.reports import (
    PREDICTIONS_TAG,
    feature_drift_report,
    prediction_drift_report,
    save_report,
)
from aios_dagster.lib.monitoring.store import ReportStore
from aios_dagster.lib.monitoring.window_data import WindowEmpty

Frames = Callable[[tuple[date, date], str], pd.DataFrame]
"""Rows of a window (first, last day inclusive); the second argument names the side."""


@dataclass(frozen=True)
class DriftKind:
    """What is compared: the model's features, or its predictions."""

    suffix: str
    """Asset key suffix and report folder: ``feature_drift`` or ``prediction_drift``."""
    tag: str
    """Workspace tag of its runs (``reports.FEATURES_TAG`` or ``PREDICTIONS_TAG``): the
    dashboard's panels select by it."""
    noun: str
    settings: DriftSettings
    columns: tuple[str, ...]


@dataclass(frozen=True)
class DayDrift:
    """A day's verdicts and where its report went; ``skipped`` says why there are none."""

    windows: Windows
    result: DriftResult | None = None
    skipped: str | None = None
    report_html: Path | None = None
    workspace_run: str | None = None
    sampled: bool = False

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.result.columns if c.drifted] if self.result else []

    def describe(self, noun: str) -> str:
        """One line an ML engineer can act on: which columns drifted, by which test, how far."""
        if self.result is None:
            return f"not evaluated: {self.skipped}"
        r = self.result
        head = (
            f"{r.drifted_columns} of {len(r.columns)} {noun} columns drifted "
            f"(share {r.share:.2f}, threshold {r.drift_share})"
        )
        worst = [
            f"{c.column} ({c.method_id} {c.score:.4g} vs {c.threshold:g})"
            for c in r.columns
            if c.drifted
        ]
        return head + (": " + ", ".join(worst) if worst else "")

    def metadata(self, store: ReportStore, model: str) -> dict[str, Any]:
        windows = self.windows.labels()
        if self.result is None:
            return {**windows, "evaluated": False, "skipped": self.skipped or ""}
        r = self.result
        table = "\n".join(
            f"| {c.column} | {c.column_type} | {c.method_id} | {c.score:.6g} | {c.threshold:g} | "
            f"{'**drifted**' if c.drifted else 'ok'} |"
            for c in r.columns
        )
        return {
            **windows,
            "evaluated": True,
            "reference_rows": r.reference_rows,
            "current_rows": r.current_rows,
            "drifted_columns": r.drifted_columns,
            "drift_share": r.share,
            "share_threshold": r.drift_share,
            "dataset_drift": r.dataset_drift,
            "drifted": self.drifted,
            "columns": dg.MetadataValue.md(
                "| column | type | method | score | threshold | verdict |\n"
                "|---|---|---|---|---|---|\n" + table
            ),
            "report_sampled": self.sampled,
            **store.links(model, self.report_html, self.workspace_run),
        }


def evaluate_day(
    spec: ModelSpec,
    kind: DriftKind,
    windows: Windows,
    frames: Frames,
    store: ReportStore,
) -> DayDrift:
    """Compare the day's current window with its reference; render and file the report."""
    try:
        reference = frames(windows.reference, "reference")
        current = frames(windows.current, "current")
    except WindowEmpty as exc:
        return DayDrift(windows, skipped=str(exc))
    settings = {**kind.settings.preset_settings(), "columns": list(kind.columns)}
    result = compute_drift(reference, current, **settings)
    shown_ref, sampled_ref = _sample(reference, store.max_report_rows)
    shown_cur, sampled_cur = _sample(current, store.max_report_rows)
    sampled = sampled_ref or sampled_cur
    render = prediction_drift_report if kind.tag == PREDICTIONS_TAG else feature_drift_report
    snapshot = render(
        shown_ref,
        shown_cur,
        settings=settings,
        tags=[f"partition:{windows.day.isoformat()}"],
        metadata={
            "model": spec.name,
            "partition": windows.day.isoformat(),
            **windows.labels(),
            "settings": json.dumps(kind.settings.preset_settings(), sort_keys=True),
            "sampled": (
                f"report on {len(shown_ref)} of {len(reference)} reference and "
                f"{len(shown_cur)} of {len(current)} current rows; the check used every row"
                if sampled
                else "no"
            ),
        },
        timestamp=windows.timestamp,
    )
    out = store.report_dir(f"{spec.name}_{kind.suffix}/{windows.day.isoformat()}")
    html, _ = save_report(snapshot, out, "drift_report")
    (out / "summary.json").write_text(
        json.dumps(
            {
                **windows.labels(),
                "drifted_columns": result.drifted_columns,
                "drift_share": result.share,
                "share_threshold": result.drift_share,
                "dataset_drift": result.dataset_drift,
                "columns": result.to_dict()["columns"],
            },
            indent=2,
        )
    )
    run = store.drift_workspace().add_report(
        spec.name, snapshot, replaces=[kind.tag, f"partition:{windows.day.isoformat()}"]
    )
    return DayDrift(windows, result, report_html=html, workspace_run=run, sampled=sampled)


def _sample(frame: pd.DataFrame, limit: int) -> tuple[pd.DataFrame, bool]:
    if len(frame) <= limit:
        return frame, False
    return frame.sample(n=limit, random_state=0), True
