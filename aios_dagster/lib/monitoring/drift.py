"""Evidently data-drift reports: what ML teams review, and the numbers a check can act on.

Evidently picks the per-column method by data size and type (K-S, Wasserstein, Jensen-Shannon,
...), so the direction of "drifted" differs by method; we read Evidently's own per-column test
verdicts instead of re-deriving them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

_COLUMN_TEST = re.compile(r"^Value Drift for column (?P<col>.+)$")
_METHOD = re.compile(
    r"ValueDrift\(column=(?P<col>[^,]+),method=(?P<method>[^,]+),threshold=(?P<thr>[^)]+)\)"
)


@dataclass(frozen=True)
class ColumnDrift:
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


@dataclass(frozen=True)
class DriftSummary:
    reference_rows: int
    current_rows: int
    drifted_columns: int
    drift_share: float
    share_threshold: float
    columns: tuple[ColumnDrift, ...]
    html_path: Path
    json_path: Path

    @property
    def dataset_drift(self) -> bool:
        """Evidently's dataset-level verdict: share of drifted columns at or above the threshold."""
        return self.drift_share >= self.share_threshold


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    drift_share: float,
    out_dir: Path,
) -> DriftSummary:
    """Compare ``current`` with ``reference`` on their shared columns; save HTML and JSON."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    if reference.empty or current.empty:
        raise ValueError(
            f"drift needs both windows: reference has {len(reference)} rows, "
            f"current has {len(current)}"
        )
    snapshot = Report([DataDriftPreset(drift_share=drift_share)], include_tests=True).run(
        current_data=current, reference_data=reference
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / "drift_report.html", out_dir / "drift_report.json"
    snapshot.save_html(str(html_path))
    snapshot.save_json(str(json_path))

    data = snapshot.dict()
    verdicts = {}
    for test in data.get("tests", []):
        m = _COLUMN_TEST.match(str(test.get("name", "")))
        if m:
            verdicts[m["col"]] = str(test.get("status")).endswith("FAIL")
    count, share = 0, 0.0
    columns: list[ColumnDrift] = []
    for metric in data["metrics"]:
        name = str(metric.get("metric_name", ""))
        if name.startswith("DriftedColumnsCount"):
            count, share = int(metric["value"]["count"]), float(metric["value"]["share"])
        elif m := _METHOD.match(name):
            columns.append(
                ColumnDrift(
                    column=m["col"],
                    method=m["method"],
                    threshold=float(m["thr"]),
                    score=float(metric["value"]),
                    drifted=verdicts.get(m["col"], False),
                )
            )
    summary = DriftSummary(
        reference_rows=len(reference),
        current_rows=len(current),
        drifted_columns=count,
        drift_share=share,
        share_threshold=drift_share,
        columns=tuple(columns),
        html_path=html_path,
        json_path=json_path,
    )
    (out_dir / "summary.json").write_text(
        json.dumps(
            {
                "drifted_columns": count,
                "drift_share": share,
                "share_threshold": drift_share,
                "dataset_drift": summary.dataset_drift,
                "columns": [c.__dict__ for c in columns],
            },
            indent=2,
        )
    )
    return summary
