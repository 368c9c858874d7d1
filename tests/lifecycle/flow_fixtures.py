"""The pieces of the end-to-end lifecycle test: a model, its labelled data, and the platform.

``FlowPlatform`` holds one real MLflow registry (SQLite in a temporary folder), the session's
real Triton server, a DuckDB warehouse, a lake folder and one Dagster instance, with the
model's own asset, check and job definitions built by the same functions the model Component
calls. Its methods are what a person does: train (materialize candidate, evaluation with its
blocking gate, and publish), launch the review / promote / rollback jobs, score a day.

The labelled data follows a linear rule with a little noise, so the linear model learns it
well and the gate's floors are reachable; a stream of rows is generated once and the training
table holds its first ``n`` rows (more labels arrive = a longer prefix).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pyarrow as pa

from aios_dagster.lib.inference.catalog import (
    GateSpec,
    GovernanceSpec,
    HeadFloor,
    RolloutSpec,
)
from aios_dagster.lib.inference.predictions import build_prediction_asset
from aios_dagster.lib.inference.shadow import build_shadow_assets
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.assets import build_model_defs
from aios_dagster.lib.lifecycle.jobs import build_lifecycle_jobs
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.lifecycle.store import ModelStore
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource
from tests.triton_fixtures import numeric_spec

MODEL = "lifecycle_flow"
TRAINING_TABLE = "flow_training"
FEATURE_TABLE = "flow_features"
N_NUMERIC = 8
SEGMENT = "vip"  # a 0/1 input whose rows get their own metrics on the model card
TEAMS = ("billing", "fraud", "support")
URGENCY = ("high", "low")
STREAM_ROWS = 3000
# Daily partitions exist up to yesterday, so the dates follow the clock: the scored day is two
# days ago and the labelled rows (one every 40 minutes) end before it. Values and ids do not
# depend on the date, so every figure is the same on any day.
SCORED_DAY = datetime.now(UTC).date() - timedelta(days=2)
START = datetime.combine(SCORED_DAY, datetime.min.time(), tzinfo=UTC) - timedelta(days=90)
PARTITIONS = dg.DailyPartitionsDefinition(start_date=(SCORED_DAY - timedelta(days=1)).isoformat())

SPEC = replace(
    numeric_spec(MODEL, N_NUMERIC, heads=("team", "urgency")),
    name=MODEL,
    feature_table=FEATURE_TABLE,
    training_table=TRAINING_TABLE,
    numeric_features=(*(f"x{i}" for i in range(N_NUMERIC)), SEGMENT),
    gate=GateSpec(
        floors={
            "team": HeadFloor(accuracy=0.85, macro_f1=0.8, recall={"fraud": 0.75}),
            "urgency": HeadFloor(accuracy=0.85),
        },
        non_inferiority_metric="macro_f1",
        non_inferiority_margin=0.03,
        holdout_fraction=0.2,
        segments=(SEGMENT,),
    ),
    governance=GovernanceSpec(
        risk_class="high",
        intended_use="Route customer emails to a team and an urgency (end-to-end test).",
        limitations=("Synthetic training data.",),
        owner="ml-platform",
    ),
    rollout=RolloutSpec(canary_share=0.1),
)


def _stream() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features (with the segment column last), team and urgency labels of the whole stream."""
    rng = np.random.default_rng(2026)
    x = rng.normal(0.0, 1.0, size=(STREAM_ROWS, N_NUMERIC))
    vip = (rng.random(STREAM_ROWS) < 0.3).astype(float)
    features = np.column_stack([x, vip])
    w_team = rng.normal(0.0, 1.5, size=(N_NUMERIC + 1, len(TEAMS)))
    w_urgency = rng.normal(0.0, 1.5, size=N_NUMERIC + 1)
    team = (features @ w_team + rng.normal(0.0, 0.3, (STREAM_ROWS, len(TEAMS)))).argmax(axis=1)
    urgency = (features @ w_urgency + rng.normal(0.0, 0.3, STREAM_ROWS) < 0).astype(int)
    return features, np.asarray(TEAMS)[team], np.asarray(URGENCY)[urgency]


def _feature_columns(features: np.ndarray) -> dict[str, np.ndarray]:
    return {name: features[:, j] for j, name in enumerate(SPEC.numeric_features)}


def write_training(path: Path, rows: int, *, shuffle_training_labels: bool = False) -> None:
    """The training table: the stream's first ``rows`` rows, one every 40 minutes.

    ``shuffle_training_labels`` permutes the labels of the rows a candidate trains on (the
    oldest ``1 - holdout_fraction``), keeping the newest rows' true labels: a model trained
    on it has learnt nothing, and the holdout shows it.
    """
    features, team, urgency = (a[:rows].copy() for a in _stream())
    if shuffle_training_labels:
        cut = int(rows * (1 - SPEC.gate.holdout_fraction))
        rng = np.random.default_rng(7)
        team[:cut], urgency[:cut] = rng.permutation(team[:cut]), rng.permutation(urgency[:cut])
    table = pa.table(
        {
            "id": [f"L-{i:05d}" for i in range(rows)],
            "ts": pa.array(
                [START + timedelta(minutes=40 * i) for i in range(rows)], pa.timestamp("us", "UTC")
            ),
            **_feature_columns(features),
            "team": team.tolist(),
            "urgency": urgency.tolist(),
        }
    )
    _replace_table(path, TRAINING_TABLE, table)


def write_scoring_day(path: Path, day: date, rows: int) -> pa.Table:
    """``rows`` unlabelled emails spread over ``day``: the feature table the scorers read."""
    rng = np.random.default_rng(11)
    features = np.column_stack(
        [rng.normal(0.0, 1.0, (rows, N_NUMERIC)), (rng.random(rows) < 0.3).astype(float)]
    )
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    table = pa.table(
        {
            "id": [f"E-{i:05d}" for i in range(rows)],
            "ts": pa.array(
                [start + timedelta(seconds=i * 86_000 / rows) for i in range(rows)],
                pa.timestamp("us", "UTC"),
            ),
            **_feature_columns(features),
        }
    )
    _replace_table(path, FEATURE_TABLE, table)
    return table


def _replace_table(path: Path, name: str, table: pa.Table) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.register("incoming", table)
        conn.execute(f"create or replace table {name} as select * from incoming")
        conn.unregister("incoming")


def serving(triton: TritonResource) -> dict[str, str]:
    """The deployment parameters Triton's config announces for the model now."""
    params = triton.get_model_config(SPEC.triton_model).get("parameters", {})
    return {
        key.removeprefix("aios_").removesuffix("_version"): value.get("string_value", "")
        for key, value in params.items()
        if key.startswith("aios_")
    }


def step_error(result: dg.ExecuteInProcessResult) -> str:
    """The messages of a run's failed steps and their causes, joined (what the Dagster UI
    shows the person: the step's wrapper error, then the ``dg.Failure`` raised inside)."""
    messages: list[str] = []
    for event in result.all_events:
        error = event.step_failure_data.error if event.is_step_failure else None
        while error is not None:
            messages.append(error.message)
            error = error.cause
    return "\n".join(messages)


@dataclass
class FlowPlatform:
    """The registry, Triton, warehouse, lake and Dagster instance one model's life runs on."""

    folder: Path
    repository: Path  # the Triton server's model repository
    registry: ModelRegistry
    triton: TritonResource
    instance: dg.DagsterInstance

    def __post_init__(self) -> None:
        self.warehouse_path = self.folder / "warehouse.duckdb"
        self.resources: dict[str, Any] = {
            "warehouse": WarehouseResource(
                duckdb_path=str(self.warehouse_path), data_dir=str(self.folder)
            ),
            "registry": self.registry,
            "models": ModelStore(
                repository=str(self.repository),
                candidates_dir=str(self.folder / "candidates"),
            ),
            "triton": self.triton,
            "lake": LakeResource(root=str(self.folder / "lake")),
        }
        model_assets, self.checks = build_model_defs(SPEC)
        self.lifecycle_assets = [*model_assets, *self.checks]
        self.predictions = build_prediction_asset(SPEC, PARTITIONS)
        self.shadow, self.comparison = build_shadow_assets(SPEC, PARTITIONS)
        self.jobs = {job.name: job for job in build_lifecycle_jobs(SPEC)}

    @property
    def lake(self) -> LakeResource:
        return self.resources["lake"]

    def train(self) -> dg.ExecuteInProcessResult:
        """Candidate, evaluation (with the blocking gate) and publish, in one run."""
        return dg.materialize(
            self.lifecycle_assets,
            resources=self.resources,
            instance=self.instance,
            raise_on_error=False,
        )

    def run_job(self, action: str, **config: Any) -> tuple[dg.ExecuteInProcessResult, float]:
        """Launch ``<model>_<action>`` with ``config`` as the Dagster UI would; its wall time."""
        job = self.jobs[f"{MODEL}_{action}"]
        started = time.perf_counter()
        result = job.execute_in_process(
            run_config={"ops": {f"{MODEL}_{action}_op": {"config": config}}},
            resources=self.resources,
            instance=self.instance,
            raise_on_error=False,
        )
        return result, time.perf_counter() - started

    def score(self, asset: dg.AssetsDefinition, day: date) -> tuple[dict[str, Any], float]:
        """Materialize one partition of a daily asset; its day metadata and the run's wall time."""
        started = time.perf_counter()
        result = dg.materialize(
            [asset],
            resources=self.resources,
            instance=self.instance,
            partition_key=day.isoformat(),
        )
        seconds = time.perf_counter() - started
        [materialization] = result.asset_materializations_for_node(asset.op.name)
        return {k: v.value for k, v in materialization.metadata.items()}, seconds

    def materialized(self, result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
        [materialization] = result.asset_materializations_for_node(asset)
        return {k: v.value for k, v in materialization.metadata.items()}

    def gate_evaluation(self, result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
        [evaluation] = result.get_asset_check_evaluations()
        return evaluation

    def answering_version(self, version: int) -> str:
        """Ask Triton for ``version`` by number; the version that answered."""
        x = np.zeros((2, len(SPEC.numeric_features)), dtype=np.float32)
        return self.triton.infer(
            SPEC.triton_model,
            x,
            [f"{h.name}_probs" for h in SPEC.heads],
            model_version=str(version),
            input_name=SPEC.input_tensor,
        ).model_version
