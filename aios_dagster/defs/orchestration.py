"""Jobs, schedules and sensors that run the reference workflow."""

import json
from pathlib import Path
from typing import Any

import dagster as dg

from aios_dagster.lib.connectors.sources import SourceSystems


def triage_job(partitions: dg.DailyPartitionsDefinition) -> Any:
    """The whole flow for one day (or a range of days): ingest to routed predictions."""
    return dg.define_asset_job(
        "triage_job",
        selection=dg.AssetSelection.all(),
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
        tags={"aios/inference": "batch"},
        description="Score days of emails with the published model on Triton.",
    )


def refresh_job() -> Any:
    """Ingest and rebuild features when new mail lands (no scoring, no partition needed)."""
    return dg.define_asset_job(
        "mail_refresh_job",
        selection=dg.AssetSelection.groups("ingest", "features"),
        description="Re-ingest sources and rebuild feature tables.",
    )


def triage_schedule(job: Any) -> dg.ScheduleDefinition:
    """Every morning, score yesterday's partition."""
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=2, name="triage_job_schedule")


def _newest(folder: Path) -> tuple[int, str, int]:
    newest, name, count = 0, "", 0
    if not folder.exists():
        return newest, name, count
    for entry in folder.iterdir():
        if entry.suffix != ".eml":
            continue
        count += 1
        mtime = entry.stat().st_mtime_ns
        if (mtime, entry.name) > (newest, name):
            newest, name = mtime, entry.name
    return newest, name, count


def build_mailbox_sensor(job: Any) -> dg.SensorDefinition:
    @dg.sensor(
        name="new_mail_sensor",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description="Requests a refresh when new .eml files land in the mailbox folder.",
    )
    def _sensor(context: dg.SensorEvaluationContext, sources: SourceSystems) -> dg.SensorResult:
        # Cursor: the newest (mtime, name) seen and how many files there were. The count
        # catches files delivered with an old mtime (``cp -p``, ``rsync -a``) that the
        # newest-file test alone would miss; listing every name would not fit in a cursor.
        newest, name, count = _newest(sources.mailbox)
        prev = json.loads(context.cursor) if context.cursor else {"mtime": 0, "name": "", "n": 0}
        is_newer = (newest, name) > (prev["mtime"], prev["name"])
        if count == 0 or not (is_newer or count > prev["n"]):
            return dg.SensorResult(
                skip_reason=f"no new mail in {sources.mailbox}", cursor=context.cursor
            )
        cursor = {"mtime": max(newest, prev["mtime"]), "name": name, "n": count}
        if not is_newer:
            cursor["name"] = prev["name"]
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(run_key=f"{newest}:{name}:{count}", tags={"aios/newest_email": name})
            ],
            cursor=json.dumps(cursor, sort_keys=True),
        )

    return _sensor
