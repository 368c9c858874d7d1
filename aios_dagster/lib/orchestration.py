"""Jobs and schedules that run the reference workflow, and the partitions they share."""

from typing import Any

import dagster as dg

from aios_dagster.lib.k8s_tags import k8s_job_tags
from aios_dagster.settings import Settings

PREDICTIONS_WRITER_TAG = "aios/writes-predictions"
"""Runs that write the predictions dataset carry this tag; the run coordinator admits one at a
time (deploy/dagster.yaml): a daily run replacing a day's parts while a micro-batch run adds to
that day would leave an email with two current predictions."""


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    """One partition per day of email, from the first day of the reference data."""
    return dg.DailyPartitionsDefinition(start_date=settings.start_date.isoformat())


def triage_job(partitions: dg.DailyPartitionsDefinition) -> Any:
    """The whole flow for one day (or a range of days): ingest to routed predictions."""
    return dg.define_asset_job(
        "triage_job",
        tags={PREDICTIONS_WRITER_TAG: "true", **k8s_job_tags("triage_job")},
        # Micro-batch scoring belongs to new mail (microbatch_job), not to the daily run.
        selection=dg.AssetSelection.all() - dg.AssetSelection.groups("microbatch"),
        partitions_def=partitions,
        description="Ingest, contracts, dbt features, train/publish, Triton scoring, drift.",
    )


def scoring_job(partitions: dg.DailyPartitionsDefinition) -> Any:
    """Only the partitioned predictions: what backfills over many days should launch.

    Backfilling ``triage_job`` would rebuild dbt and retrain once per day, in parallel runs on
    one DuckDB file; scoring alone is safe to fan out.
    """
    return dg.define_asset_job(
        "scoring_job",
        selection=dg.AssetSelection.groups("inference"),
        partitions_def=partitions,
        tags={
            "aios/inference": "batch",
            PREDICTIONS_WRITER_TAG: "true",
            **k8s_job_tags("scoring_job"),
        },
        description="Score days of emails with the published model on Triton.",
    )


def refresh_job() -> Any:
    """Ingest and rebuild features when new mail lands (no scoring, no partition needed)."""
    return dg.define_asset_job(
        "mail_refresh_job",
        selection=dg.AssetSelection.groups("ingest", "features"),
        tags=k8s_job_tags("mail_refresh_job"),
        description="Re-ingest sources and rebuild feature tables.",
    )


def triage_schedule(job: Any) -> dg.ScheduleDefinition:
    """Every morning, score yesterday's partition."""
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=2, name="triage_job_schedule")
