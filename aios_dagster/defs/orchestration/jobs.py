"""Jobs and schedules of the triage workflow. Connector triggers and sensors name these jobs by
name (``microbatch_job``), so nothing passes job objects between Components."""

import dagster as dg

from aios_dagster.lib.inference.microbatch import microbatch_job
from aios_dagster.lib.orchestration import (
    daily_partitions,
    refresh_job,
    scoring_job,
    triage_job,
    triage_schedule,
)
from aios_dagster.lib.run_traces import run_trace_sensors
from aios_dagster.settings import current_settings


@dg.definitions
def jobs() -> dg.Definitions:
    partitions = daily_partitions(current_settings())
    triage = triage_job(partitions)
    return dg.Definitions(
        jobs=[triage, scoring_job(partitions), refresh_job(), microbatch_job()],
        schedules=[triage_schedule(triage)],
        sensors=run_trace_sensors(),
    )
