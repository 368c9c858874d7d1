"""dagster-dbt wiring shared by every dbt project the platform loads.

The manifest is prepared by ``make manifest`` (``dbt parse``) before Dagster loads, never at
import; under ``dagster dev`` ``prepare_if_dev`` re-parses so model edits show up live.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject


def dbt_project(project_dir: Path) -> DbtProject:
    project = DbtProject(project_dir=project_dir, profiles_dir=project_dir)
    project.prepare_if_dev()
    return project


class FeatureTranslator(DagsterDbtTranslator):
    """dbt models show in the ``features`` group next to the Python feature assets."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "features"


def translator() -> DagsterDbtTranslator:
    """dbt tests become Dagster asset checks on the models they test."""
    return FeatureTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def build_args(command: str, data_dir: Path, *, target: str = "duckdb") -> list[str]:
    """The dbt CLI arguments for one invocation (pure, unit-tested)."""
    return [command, "--target", target, "--vars", json.dumps({"data_dir": str(data_dir)})]
