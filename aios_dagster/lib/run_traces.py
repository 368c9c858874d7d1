"""The root span of each run's trace, recorded when the run ends (see :mod:`tracing`).

Step spans name their run's root span before it exists (its id is derived from the run id);
these run-status sensors record it, with the run's own start and end times, once the run has
succeeded or failed. Without an OTLP endpoint configured they do nothing.
"""

from datetime import UTC, datetime

import dagster as dg

from aios_dagster.lib import tracing


def _record(context: dg.RunStatusSensorContext) -> None:
    if not tracing.exporting():
        return
    run = context.dagster_run
    stats = context.instance.get_run_stats(run.run_id)
    if stats.start_time is None or stats.end_time is None:
        return
    tracing.record_run_span(
        run.run_id,
        run.job_name,
        datetime.fromtimestamp(stats.start_time, UTC),
        datetime.fromtimestamp(stats.end_time, UTC),
        run.status.value,
        {
            "dagster.steps_succeeded": stats.steps_succeeded,
            "dagster.steps_failed": stats.steps_failed,
            **(
                {"dagster.partition": run.tags["dagster/partition"]}
                if "dagster/partition" in run.tags
                else {}
            ),
        },
    )


def run_trace_sensors() -> list[dg.SensorDefinition]:
    succeeded = dg.run_status_sensor(
        run_status=dg.DagsterRunStatus.SUCCESS,
        name="run_traces_succeeded",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records the root span of each succeeded run's trace (OTLP, if configured).",
    )(_record)
    failed = dg.run_failure_sensor(
        name="run_traces_failed",
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Records the root span of each failed run's trace (OTLP, if configured).",
    )(_record)
    return [succeeded, failed]
