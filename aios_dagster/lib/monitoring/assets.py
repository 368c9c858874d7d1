"""Weekly drift of the router's features: the current week against the week before it."""

from datetime import date, timedelta

import dagster as dg

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.monitoring.drift import run_drift_report
from aios_dagster.lib.monitoring.store import ReportStore
from aios_dagster.lib.warehouse import WarehouseResource


def drift_windows(warehouse: WarehouseResource, spec: ModelSpec) -> tuple[date, date, date]:
    """The newest landed day, the first day of its 7-day window and of the 7 days before."""
    newest = (
        warehouse.query_arrow(
            f"select max(cast({spec.time_column} at time zone 'UTC' as date)) as d "
            f"from {spec.feature_table}"
        )
        .column("d")[0]
        .as_py()
    )
    if newest is None:
        raise dg.Failure(
            description=f"{spec.feature_table} has no rows: no window to compare",
            allow_retries=False,
        )
    current_start = newest - timedelta(days=6)
    return newest, current_start, current_start - timedelta(days=7)


def build_drift_asset(spec: ModelSpec) -> dg.AssetsDefinition:
    key = dg.AssetKey(f"{spec.name}_feature_drift")

    @dg.asset(
        key=key,
        group_name="monitoring",
        deps=[dg.AssetKey(spec.feature_table)],
        kinds={"evidently"},
        check_specs=[
            dg.AssetCheckSpec(
                "drift_within_threshold",
                asset=key,
                description="Fails when the share of drifted feature columns reaches the "
                "threshold (a signal to review the report and retrain).",
            )
        ],
        description="Evidently data-drift report of the model's features: the newest 7 days "
        "against the 7 days before (HTML for review, JSON for machines).",
    )
    def _drift(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, reports: ReportStore
    ) -> dg.MaterializeResult:
        current_end, current_start, reference_start = drift_windows(warehouse, spec)
        # Only the two windows leave the warehouse: the cost follows the window, not history.
        frame = warehouse.query_arrow(
            f"select cast({spec.time_column} at time zone 'UTC' as date) as _day, "
            f"{', '.join(spec.numeric_features)} from {spec.feature_table} "
            f"where cast({spec.time_column} at time zone 'UTC' as date) between ? and ?",
            [reference_start, current_end],
        ).to_pandas()
        days = frame.pop("_day")
        current = frame[days >= current_start]
        reference = frame[days < current_start]
        summary = run_drift_report(
            reference,
            current,
            drift_share=reports.drift_share_threshold,
            out_dir=reports.report_dir(f"{spec.name}_feature_drift/{current_end.isoformat()}"),
        )
        context.log.info(
            f"drift: {summary.drifted_columns}/{len(summary.columns)} columns drifted "
            f"(share {summary.drift_share:.2f}, threshold {summary.share_threshold})"
        )
        drifted = [c.column for c in summary.columns if c.drifted]
        check = dg.AssetCheckResult(
            check_name="drift_within_threshold",
            passed=not summary.dataset_drift,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={
                "drift_share": summary.drift_share,
                "threshold": summary.share_threshold,
                "drifted": drifted,
            },
        )
        return dg.MaterializeResult(
            check_results=[check],
            metadata={
                "report_html": dg.MetadataValue.path(str(summary.html_path)),
                "report_url": dg.MetadataValue.url(summary.html_path.as_uri()),
                "report_json": dg.MetadataValue.path(str(summary.json_path)),
                "reference_window": f"{reference_start}..{current_start - timedelta(days=1)}",
                "current_window": f"{current_start}..{current_end}",
                "reference_rows": summary.reference_rows,
                "current_rows": summary.current_rows,
                "drifted_columns": summary.drifted_columns,
                "drift_share": summary.drift_share,
                "dataset_drift": summary.dataset_drift,
                "drifted": drifted,
            },
        )

    return _drift
