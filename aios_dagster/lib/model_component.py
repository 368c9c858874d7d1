"""The model Component: one ``defs/models/<name>/defs.yaml`` per model the platform serves.

Its attributes are the model's declaration (features to tensor, heads, decision policy, gate);
from them it builds the model's whole life in Dagster: training and registration in MLflow,
evaluation against the champion and the blocking gate, deployment of champion and challenger
to Triton, daily batch scoring (with the canary share), shadow scoring and its comparison,
micro-batch scoring of new mail, the routing and review sinks, feature and prediction drift
and labelled quality, the drift-to-retrain sensor, and the promote / rollback / review /
retrain jobs. A second model is a second YAML file.
"""

from __future__ import annotations

from typing import Self

import dagster as dg
from pydantic import BaseModel

from aios_dagster.lib.connectors.component import load_naming_file
from aios_dagster.lib.inference.catalog import ModelConfig
from aios_dagster.lib.inference.microbatch import build_microbatch_asset
from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.shadow import build_shadow_assets
from aios_dagster.lib.inference.sinks import build_sink_assets
from aios_dagster.lib.lifecycle.assets import build_model_defs
from aios_dagster.lib.lifecycle.jobs import build_lifecycle_jobs
from aios_dagster.lib.monitoring.assets import build_drift_assets
from aios_dagster.lib.monitoring.quality import build_quality_asset
from aios_dagster.lib.monitoring.retrain import drift_retrain_sensor, retrain_job
from aios_dagster.lib.orchestration import daily_partitions
from aios_dagster.settings import current_settings


class ModelComponent(ModelConfig, dg.Component, dg.Resolvable):
    """A served model and every asset, check and sink of its lifecycle."""

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        return load_naming_file(super().load, attributes, context, "model")

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        spec = self.to_spec()
        partitions = daily_partitions(current_settings())
        model_assets, model_checks = build_model_defs(spec)
        return dg.Definitions(
            assets=[
                *model_assets,
                build_prediction_asset(spec, partitions),
                *build_shadow_assets(spec, partitions),
                build_microbatch_asset(spec),
                build_sink_assets(spec, partitions),
                *build_drift_assets(spec, partitions),
                build_quality_asset(spec, partitions),
            ],
            asset_checks=model_checks,
            jobs=[*build_lifecycle_jobs(spec), retrain_job(spec)],
            sensors=[s for s in (drift_retrain_sensor(spec),) if s is not None],
        )
