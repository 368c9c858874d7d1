"""Classification quality of past decisions, once the agents' labels have arrived.

Labels come days after the decisions (an agent routes the email later), so a day's window is
only partly labelled for a while: quality covers the labelled decisions only and says how many
of the window's decisions that is. The check holds each head to the gate's floors (the same
accuracy and macro F1 a candidate had to reach on its holdout), once enough labels are in.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.monitoring.drift_config import Windows
from aios_dagster.lib.monitoring.reports import (
    QUALITY_TAG,
    binary_looking,
    quality_report,
    save_report,
    snapshot_metric_values,
)
from aios_dagster.lib.monitoring.store import ReportStore
from aios_dagster.lib.monitoring.window_data import labelled_decisions
from aios_dagster.lib.partitions import partition_days
from aios_dagster.lib.warehouse import WarehouseResource

QUALITY_CHECK = "quality_above_floor"


@dataclass(frozen=True)
class DayQuality:
    windows: Windows
    decisions: int
    labelled: int
    heads: dict[str, dict[str, float]] = field(default_factory=dict)
    below_floor: list[str] = field(default_factory=list)
    report_html: Path | None = None
    workspace_run: str | None = None
    skipped: str | None = None

    def describe(self, min_rows: int) -> str:
        span = f"{self.windows.current[0]}..{self.windows.current[1]}"
        head = f"{self.labelled} of {self.decisions} decisions of {span} labelled"
        if self.skipped:
            return f"{head}: not measured: {self.skipped}"
        if not self.heads:
            return f"{head}: no quality yet"
        scores = ", ".join(
            f"{h} accuracy {m['accuracy']:.3f} macro F1 {m['macro_f1']:.3f}"
            for h, m in self.heads.items()
        )
        verdict = (
            f"too few labels to judge (fewer than {min_rows})"
            if self.labelled < min_rows
            else ("below the gate's floor: " + "; ".join(self.below_floor))
            if self.below_floor
            else "at or above the gate's floors"
        )
        return f"{head}: {scores}; {verdict}"


def measure_day(
    spec: ModelSpec,
    windows: Windows,
    warehouse: WarehouseResource,
    lake: LakeResource,
    store: ReportStore,
) -> DayQuality:
    frame, total = labelled_decisions(warehouse, lake, spec, windows.current)
    if frame.empty:
        return DayQuality(windows, total, 0)
    two = [h.name for h in spec.heads if binary_looking(frame, f"{h.name}_label", h.name)]
    if two:
        # Evidently would score them as binary: say so rather than report a wrong number.
        return DayQuality(
            windows, total, len(frame), skipped=f"heads {two} hold only two labels in the window"
        )
    snapshot = quality_report(
        frame,
        heads={h.name: (f"{h.name}_label", h.name) for h in spec.heads},
        tags=[f"partition:{windows.day.isoformat()}"],
        metadata={
            "model": spec.name,
            "partition": windows.day.isoformat(),
            **windows.labels(),
            "labelled_rows": str(len(frame)),
            "decisions": str(total),
        },
        timestamp=windows.timestamp,
    )
    # Evidently's own numbers (macro F1): the report a person opens shows the same ones.
    values = snapshot_metric_values(snapshot)
    heads: dict[str, dict[str, float]] = {}
    below: list[str] = []
    for head in spec.heads:
        metrics = {
            "accuracy": values[f"{head.name}.accuracy"],
            "macro_f1": values[f"{head.name}.f1"],
        }
        heads[head.name] = metrics
        floor = spec.gate.floors.get(head.name)
        for metric in ("accuracy", "macro_f1"):
            least = getattr(floor, metric, 0.0) if floor else 0.0
            if metrics[metric] < least:
                below.append(f"{head.name} {metric} {metrics[metric]:.3f} < {least}")
    out = store.report_dir(f"{spec.name}_quality/{windows.day.isoformat()}")
    html, _ = save_report(snapshot, out, "quality_report")
    (out / "summary.json").write_text(
        json.dumps({"decisions": total, "labelled": len(frame), "heads": heads}, indent=2)
    )
    run = store.drift_workspace().add_report(
        spec.name, snapshot, replaces=[QUALITY_TAG, f"partition:{windows.day.isoformat()}"]
    )
    return DayQuality(windows, total, len(frame), heads, below, html, run)


def _metadata(day: DayQuality, store: ReportStore, model: str, min_rows: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        **day.windows.labels(),
        "decisions": day.decisions,
        "labelled_rows": day.labelled,
        "labelled_share": day.labelled / day.decisions if day.decisions else 0.0,
        "summary": day.describe(min_rows),
    }
    for head, metrics in day.heads.items():
        out.update({f"{head}_{name}": value for name, value in metrics.items()})
    return {**out, **store.links(model, day.report_html, day.workspace_run)}


def build_quality_asset(
    spec: ModelSpec, partitions: dg.DailyPartitionsDefinition
) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"{spec.name}_quality")
    min_rows = spec.monitoring.quality.min_labelled_rows

    @dg.asset(
        key=key,
        group_name="monitoring",
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[dg.AssetKey(f"{spec.name}_predictions"), dg.AssetKey(spec.training_table)],
        kinds={"evidently"},
        check_specs=[
            dg.AssetCheckSpec(
                QUALITY_CHECK,
                asset=key,
                description="Fails when a head's accuracy or macro F1 on the labelled decisions "
                f"of the run's newest window falls below the gate's floor (with at least "
                f"{min_rows} labels).",
            )
        ],
        description=f"Classification quality of {spec.name}'s decisions in each day's current "
        "window, on the decisions whose labels have arrived (Evidently classification report).",
    )
    def _quality(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        lake: LakeResource,
        reports: ReportStore,
    ) -> dg.MaterializeResult:
        newest: DayQuality | None = None
        for partition, day in partition_days(context, key.to_user_string()):
            measured = measure_day(spec, spec.monitoring.windows(day), warehouse, lake, reports)
            context.add_asset_metadata(
                _metadata(measured, reports, spec.name, min_rows), partition_key=partition
            )
            context.log.info(f"{key.to_user_string()} {day}: {measured.describe(min_rows)}")
            newest = measured
        assert newest is not None
        failed = newest.labelled >= min_rows and bool(newest.below_floor)
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(
                    check_name=QUALITY_CHECK,
                    passed=not failed,
                    severity=dg.AssetCheckSeverity.ERROR,
                    description=f"{newest.windows.day}: {newest.describe(min_rows)}",
                    metadata={
                        "partition": newest.windows.day.isoformat(),
                        "labelled_rows": newest.labelled,
                        "decisions": newest.decisions,
                        "below_floor": newest.below_floor,
                    },
                )
            ]
        )

    return _quality
