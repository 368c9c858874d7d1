"""dagster-dbt wiring shared by every dbt project the platform loads.

The manifest is prepared by ``make manifest`` (``dbt parse``) before Dagster loads, never at
import; under ``dagster dev`` ``prepare_if_dev`` re-parses so model edits show up live.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
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


class DbtBuildConfig(dg.Config):
    """Run config of the dbt models asset.

    The feature models are incremental (see dbt_project/README.md); ``full_refresh`` rebuilds
    them from the whole lake, which is needed only after lake parts older than the landing
    lookback were rewritten or removed, or after a model's SQL or vars changed.
    """

    full_refresh: bool = False


def build_args(
    command: str,
    data_dir: Path,
    *,
    target: str = "duckdb",
    full_refresh: bool = False,
    extra_vars: Mapping[str, Any] | None = None,
) -> list[str]:
    """The dbt CLI arguments for one invocation (pure, unit-tested).

    ``extra_vars``: e.g. the Postgres host and database (never a password: the arguments are
    logged).
    """
    variables = {"data_dir": str(data_dir), **(extra_vars or {})}
    args = [command, "--target", target, "--vars", json.dumps(variables)]
    return [*args, "--full-refresh"] if full_refresh else args


def lake_sources(manifest: Path) -> list[str]:
    """The lake datasets the dbt project reads (its ``lake`` source tables)."""
    nodes = json.loads(manifest.read_text())["sources"].values()
    return sorted(n["name"] for n in nodes if n["source_name"] == "lake")
