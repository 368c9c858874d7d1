"""Triton's health in the UI: the health sensor and a served_by_triton check per model."""

import dagster as dg

from aios_dagster.lib.inference.catalog import load_catalog
from aios_dagster.lib.serving.health import (
    build_served_by_triton_check,
    build_triton_health_sensor,
)
from aios_dagster.settings import current_settings


@dg.definitions
def triton_health() -> dg.Definitions:
    published = {
        spec.triton_model: dg.AssetKey(f"{spec.name}_published")
        for spec in load_catalog(current_settings().models_dir).values()
    }
    return dg.Definitions(
        sensors=[build_triton_health_sensor(published)],
        asset_checks=[build_served_by_triton_check(key, m) for m, key in published.items()],
    )
