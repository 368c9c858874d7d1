"""The code location: everything the reference workflow defines, gathered in one place.

Built lazily by ``@dg.definitions`` so that importing this module does nothing: settings are
read, the dbt manifest is located and resources are configured only when Dagster loads it.
"""

from __future__ import annotations

import dagster as dg

from aios_dagster.lib.connectors.definitions import connector_defs
from aios_dagster.lib.dbt import dbt_project
from aios_dagster.lib.features.assets import build_dbt_assets, email_text_features
from aios_dagster.lib.inference.microbatch import build_microbatch_asset, microbatch_job
from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.sinks import build_sink_assets
from aios_dagster.lib.lifecycle.assets import build_model_defs, catalog
from aios_dagster.lib.monitoring.assets import build_drift_asset
from aios_dagster.lib.orchestration import (
    refresh_job,
    scoring_job,
    triage_job,
    triage_schedule,
)
from aios_dagster.resources import build_resources
from aios_dagster.settings import Settings


def build_definitions(settings: Settings) -> dg.Definitions:
    partitions = dg.DailyPartitionsDefinition(start_date=settings.start_date.isoformat())
    project = dbt_project(settings.dbt_project_dir)
    triage = triage_job(partitions)
    scoring = scoring_job(partitions)
    refresh = refresh_job()
    microbatch = microbatch_job()
    named_jobs = {job.name: job for job in (triage, scoring, refresh, microbatch)}
    connectors = connector_defs(settings, named_jobs)
    assets: list[dg.AssetsDefinition] = [
        *connectors.assets,
        email_text_features,
        build_dbt_assets(project.manifest_path),
    ]
    checks: list[dg.AssetChecksDefinition] = list(connectors.checks)
    for spec in catalog(settings.model_catalog).values():
        model_assets, model_checks = build_model_defs(spec)
        assets += [
            *model_assets,
            build_prediction_asset(spec, partitions),
            build_microbatch_asset(spec),
            build_sink_assets(spec, partitions),
            build_drift_asset(spec),
        ]
        checks += model_checks
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[*named_jobs.values(), *connectors.jobs],
        schedules=[triage_schedule(triage), *connectors.schedules],
        sensors=connectors.sensors,
        resources=build_resources(settings),
    )


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
