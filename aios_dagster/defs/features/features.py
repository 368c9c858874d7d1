"""The feature layer of the triage workflow: hashed text features and the dbt project."""

import dagster as dg

from aios_dagster.lib.dbt import dbt_project
from aios_dagster.lib.features.assets import build_dbt_assets, email_text_features
from aios_dagster.lib.realtime.assets import customer_online_features
from aios_dagster.settings import current_settings


@dg.definitions
def features() -> dg.Definitions:
    project = dbt_project(current_settings().dbt_project_dir)
    return dg.Definitions(
        assets=[
            email_text_features,
            build_dbt_assets(project.manifest_path),
            customer_online_features,
        ]
    )
