"""A model's life in Dagster: train and register, evaluate against the champion, gate, deploy.

``<name>_candidate`` trains on the older labelled rows and registers the result as a version
in the MLflow registry (one MLflow run per training, lineage attached; identical weights reuse
their version). ``<name>_evaluation`` scores that version *and the current champion* on the
same newest rows the candidate never saw; the blocking ``gate`` check applies the catalog's
floors and non-inferiority margin to them and records its verdict on the version.
``<name>_published`` then moves aliases and projects them onto Triton: a first version that
passed the gate (and, for a high-risk model, was approved) becomes champion; a later one
becomes the challenger, served in shadow (or on the canary share) until someone promotes it.
Nothing here ever replaces a champion on its own.
"""

from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pyarrow as pa

from aios_dagster.lib.inference.catalog import ModelSpec, load_catalog
from aios_dagster.lib.lifecycle import versions as version_records
from aios_dagster.lib.lifecycle.evaluation import Evaluation, evaluate, time_split
from aios_dagster.lib.lifecycle.gate import apply_gate
from aios_dagster.lib.lifecycle.registry import ModelRegistry
from aios_dagster.lib.lifecycle.rollout import (
    CHALLENGER,
    CHAMPION,
    GATE_TAG,
    Deployment,
    deploy,
)
from aios_dagster.lib.lifecycle.store import ModelStore
from aios_dagster.lib.lifecycle.train import train_linear_heads
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource
from aios_dagster.settings import current_settings


def catalog(models_dir: Path | None = None) -> dict[str, ModelSpec]:
    """The declared models (the model Components under ``Settings.models_dir`` by default)."""
    return load_catalog(models_dir or current_settings().models_dir)


def _labelled_rows(warehouse: WarehouseResource, spec: ModelSpec) -> pa.Table:
    cols = ", ".join(
        dict.fromkeys(
            (
                spec.id_column,
                spec.time_column,
                *spec.feature_columns,
                *(h.label_column for h in spec.heads),
            )
        )
    )
    return warehouse.query_arrow(
        f"select {cols} from {spec.training_table} order by {spec.time_column}, {spec.id_column}"
    )


def _targets(spec: ModelSpec, table: pa.Table) -> dict[str, np.ndarray]:
    return {
        h.name: table.column(h.label_column).to_numpy(zero_copy_only=False).astype(str)
        for h in spec.heads
    }


def _segments(spec: ModelSpec, table: pa.Table) -> dict[str, np.ndarray]:
    return {
        s: table.column(s).to_numpy(zero_copy_only=False).astype(float) > 0.5
        for s in spec.gate.segments
    }


def _candidate_version(context: Any, spec: ModelSpec) -> int:
    """The registry version the latest ``<name>_candidate`` materialization registered."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey(f"{spec.name}_candidate"))
    if event is None or event.asset_materialization is None:
        raise dg.Failure(f"{spec.name}: no candidate has been trained yet")
    value = event.asset_materialization.metadata.get("registry_version")
    if value is None:
        raise dg.Failure(f"{spec.name}: the latest candidate materialization names no version")
    return int(value.value)


def build_model_defs(spec: ModelSpec) -> tuple[list[dg.AssetsDefinition], list]:
    """Training, evaluation, the blocking gate and deployment for one catalog entry."""
    candidate_key = dg.AssetKey(f"{spec.name}_candidate")
    evaluation_key = dg.AssetKey(f"{spec.name}_evaluation")
    holdout = spec.gate.holdout_fraction

    @dg.asset(
        key=candidate_key,
        group_name="models",
        deps=[dg.AssetKey(spec.training_table)],
        kinds={"scikitlearn", "mlflow"},
        description=f"{spec.name} trained on the oldest {1 - holdout:.0%} of {spec.training_table}"
        " and registered as a version in the MLflow registry with its lineage.",
    )
    def _train(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: ModelRegistry
    ) -> dg.MaterializeResult:
        table = _labelled_rows(warehouse, spec)
        x, feature_names = spec.build_matrix_with_names(table)
        cut = time_split(table.num_rows, holdout)
        model, report = train_linear_heads(
            x, _targets(spec, table), feature_names, holdout_fraction=holdout
        )
        registered = version_records.register_candidate(
            spec, registry, model, table=table, cut=cut, report=report, run_id=context.run_id
        )
        context.log.info(
            f"{spec.name} v{registered.version} "
            f"({'registered' if registered.created else 'identical weights, existing version'})"
        )
        return dg.MaterializeResult(
            metadata={
                "registry_version": registered.version,
                "created": registered.created,
                "mlflow_run_id": registered.run_id,
                "content_hash": model.content_hash(),
                "rows_train": report.rows_train,
                "rows_holdout": report.rows_holdout,
            }
        )

    @dg.asset(
        key=evaluation_key,
        group_name="models",
        deps=[candidate_key],
        kinds={"mlflow"},
        description=f"The {spec.name} candidate and the current champion evaluated on the same "
        "newest labelled rows the candidate never saw: accuracy, macro F1, recall per class, "
        "calibration (ECE), per head and per segment.",
    )
    def _evaluation(
        context: dg.AssetExecutionContext, warehouse: WarehouseResource, registry: ModelRegistry
    ) -> dg.MaterializeResult:
        version = _candidate_version(context, spec)
        table = version_records.holdout_rows(
            spec, registry, version, _labelled_rows(warehouse, spec)
        )
        x = spec.build_matrix(table)
        targets, segments = _targets(spec, table), _segments(spec, table)
        candidate = evaluate(registry.load_model(spec.name, version), x, targets, segments)
        champion_version = registry.get_alias(spec.name, CHAMPION)
        champion: Evaluation | None = None
        if champion_version is not None and champion_version != version:
            champion = evaluate(
                registry.load_model(spec.name, champion_version), x, targets, segments
            )
        version_records.save_evaluation(
            registry, spec, version, candidate, champion, champion_version
        )
        first = spec.heads[0].name
        return dg.MaterializeResult(
            metadata={
                "registry_version": version,
                "champion_version": champion_version or "none",
                "rows": candidate.rows,
                f"macro_f1_{first}": candidate.head(first).macro_f1,
                **(
                    {f"champion_macro_f1_{first}": champion.head(first).macro_f1}
                    if champion
                    else {}
                ),
                "candidate": dg.MetadataValue.md(candidate.to_markdown()),
                **({"champion": dg.MetadataValue.md(champion.to_markdown())} if champion else {}),
            }
        )

    @dg.asset_check(
        asset=evaluation_key,
        name="gate",
        blocking=True,
        description="Floors per head and class from the catalog, and non-inferiority against "
        f"the champion ({spec.gate.non_inferiority_metric} lower by at most "
        f"{spec.gate.non_inferiority_margin}).",
    )
    def _gate(
        context: dg.AssetCheckExecutionContext, registry: ModelRegistry
    ) -> dg.AssetCheckResult:
        version = _candidate_version(context, spec)
        candidate, champion, champion_version = version_records.load_evaluation(
            registry, spec, version
        )
        result = apply_gate(spec.gate, candidate, champion)
        version_records.save_gate(registry, spec, version, result)
        card = version_records.write_card(registry, spec, version)
        return dg.AssetCheckResult(
            passed=result.passed,
            description=None if result.passed else result.summary(),
            metadata={
                "registry_version": version,
                "champion_version": champion_version or "none",
                "rules": dg.MetadataValue.md(result.to_markdown()),
                "model_card": dg.MetadataValue.md(card),
            },
        )

    @dg.asset(
        key=dg.AssetKey(f"{spec.name}_published"),
        group_name="models",
        deps=[evaluation_key],
        kinds={"triton"},
        description=f"What Triton serves for {spec.name}: the registry's champion and challenger "
        "versions (a `specific` version policy), loaded without a restart. A gated first "
        "version becomes champion; later ones become the challenger (shadow or canary).",
    )
    def _publish(
        context: dg.AssetExecutionContext,
        registry: ModelRegistry,
        models: ModelStore,
        triton: TritonResource,
    ) -> dg.MaterializeResult:
        version = _candidate_version(context, spec)
        tags = registry.version_tags(spec.name, version)
        if tags.get(GATE_TAG) != "passed":
            # The blocking check guards a full run; this guards a publish launched on its own.
            raise dg.Failure(
                f"{spec.name} v{version}: gate is {tags.get(GATE_TAG, 'not run')}; "
                "refusing to deploy it"
            )
        actor = f"dagster run {context.run_id}"
        notes = version_records.assign_aliases(spec, registry, version, actor=actor)
        deployment = deploy(
            spec,
            registry=registry,
            repository=Path(models.repository),
            triton=triton,
            mirror=models.mirror(),
        )
        for note in notes:
            context.log.info(note)
        card = version_records.write_card(registry, spec, version)
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.triton_model,
                "model_version": deployment.champion or "none",
                CHAMPION: deployment.champion or "none",
                CHALLENGER: deployment.challenger or "none",
                "canary_share": deployment.canary_share,
                "load_seconds": round(deployment.load_seconds, 3),
                **_mirror_metadata(deployment),
                "notes": "; ".join(notes) or "no alias changed",
                "model_card": dg.MetadataValue.md(card),
            }
        )

    return [_train, _evaluation, _publish], [_gate]


def _mirror_metadata(deployment: Deployment) -> dict[str, Any]:
    """Where the fleet's copy went and what changed there (nothing when none is configured)."""
    mirrored = deployment.mirrored
    if mirrored is None:
        return {}
    return {
        "repository_mirror": mirrored.url,
        "mirror_uploaded_versions": ", ".join(map(str, mirrored.uploaded_versions)) or "none",
        "mirror_removed_versions": ", ".join(map(str, mirrored.removed_versions)) or "none",
        "mirror_bytes": mirrored.bytes,
    }
