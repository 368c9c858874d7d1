"""The code location: every Component and definitions file under ``defs/``, plus the resources
of the active profile.

Built lazily by ``@dg.definitions`` so that importing this module does nothing: settings are
read, the dbt manifest is located and resources are configured only when Dagster loads it.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

import aios_dagster.defs
from aios_dagster.lib.executors import executor_for
from aios_dagster.resources import build_resources
from aios_dagster.settings import Settings, active_settings


def build_definitions(settings: Settings) -> dg.Definitions:
    """Load ``defs/`` with ``settings`` visible to its Components, and bind the resources."""
    project_root = Path(aios_dagster.defs.__file__).parents[2]
    with active_settings(settings):
        loaded = dg.load_from_defs_folder(project_root=project_root)
    bound = dg.Definitions(
        resources=build_resources(settings), executor=executor_for(settings.executor)
    )
    return dg.Definitions.merge(loaded, bound)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(Settings.from_env())
