"""Model lifecycle for the router: train a candidate, gate it, publish it to Triton."""

from dataclasses import asdict
from pathlib import Path

import dagster as dg

from aios_dagster.lib.inference.catalog import ModelSpec, load_catalog
from aios_dagster.lib.lifecycle.store import ModelStore
from aios_dagster.lib.lifecycle.train import train_linear_heads
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonResource
from aios_dagster.lib.warehouse import WarehouseResource
from aios_dagster.settings import current_settings


def catalog(models_dir: Path | None = None) -> dict[str, ModelSpec]:
    """The declared models (the model Components under ``Settings.models_dir`` by default)."""
    return load_catalog(models_dir or current_settings().models_dir)


def _floor(spec: ModelSpec) -> float:
    floor = spec.gate.floors.get(spec.heads[0].name)
    return floor.accuracy if floor else 0.0


def build_model_defs(spec: ModelSpec) -> tuple[list[dg.AssetsDefinition], list]:
    """Training, quality gate and publishing assets for one catalog entry."""
    candidate_key = dg.AssetKey(f"{spec.name}_candidate")

    @dg.asset(
        key=candidate_key,
        group_name="models",
        deps=[dg.AssetKey(spec.training_table)],
        kinds={"scikitlearn"},
        description=f"{spec.name} trained on {spec.training_table}; newest 20% held out.",
    )
    def _train(warehouse: WarehouseResource, models: ModelStore) -> dg.MaterializeResult:
        cols = ", ".join(spec.feature_columns + tuple(h.label_column for h in spec.heads))
        table = warehouse.query_arrow(
            f"select {cols} from {spec.training_table} "
            f"order by {spec.time_column}, {spec.id_column}"
        )
        x, feature_names = spec.build_matrix_with_names(table)
        targets = {
            h.name: table.column(h.label_column).to_numpy(zero_copy_only=False) for h in spec.heads
        }
        model, report = train_linear_heads(x, targets, feature_names)
        report_dict = {**asdict(report), "content_hash": model.content_hash()}
        path = models.save_candidate(spec.name, model, report_dict)
        return dg.MaterializeResult(
            metadata={
                "rows_train": report.rows_train,
                "rows_holdout": report.rows_holdout,
                **{f"holdout_accuracy_{k}": v for k, v in report.holdout_accuracy.items()},
                **{f"holdout_macro_f1_{k}": v for k, v in report.holdout_macro_f1.items()},
                "content_hash": model.content_hash(),
                "path": dg.MetadataValue.path(str(path)),
            }
        )

    @dg.asset_check(
        asset=candidate_key,
        name="quality_gate",
        blocking=True,
        description=f"Holdout accuracy of the first head >= {_floor(spec)}.",
    )
    def _gate(models: ModelStore) -> dg.AssetCheckResult:
        _model, report = models.load_candidate(spec.name)
        first = spec.heads[0].name
        accuracy = report["holdout_accuracy"][first]
        return dg.AssetCheckResult(
            passed=accuracy >= _floor(spec),
            metadata={"holdout_accuracy": accuracy, "threshold": _floor(spec)},
        )

    @dg.asset(
        key=dg.AssetKey(f"{spec.name}_published"),
        group_name="models",
        deps=[candidate_key],
        kinds={"triton"},
        description=f"The gated {spec.name} candidate as a version in the Triton model "
        "repository, loaded by the server. Identical weights reuse the existing version.",
    )
    def _publish(
        context: dg.AssetExecutionContext, models: ModelStore, triton: TritonResource
    ) -> dg.MaterializeResult:
        model, report = models.load_candidate(spec.name)
        accuracy = report["holdout_accuracy"][spec.heads[0].name]
        if report.get("content_hash") != model.content_hash():
            raise ValueError(f"{spec.name}: candidate weights and report disagree; retrain")
        if accuracy < _floor(spec):
            # The blocking check guards a full run; this guards a publish launched on its own.
            raise ValueError(
                f"{spec.name}: candidate holdout accuracy {accuracy:.3f} is below the gate "
                f"{_floor(spec)}; refusing to publish"
            )
        published = publish_linear_model(
            Path(models.repository),
            spec.triton_model,
            model,
            max_batch_size=spec.max_batch_size,
            input_name=spec.input_tensor,
        )
        triton.load_model(spec.triton_model)
        context.log.info(
            f"{spec.triton_model} version {published.version} "
            f"({'new' if published.created else 'unchanged weights, reused'}) loaded on Triton"
        )
        return dg.MaterializeResult(
            metadata={
                "model_name": spec.triton_model,
                "model_version": published.version,
                "created": published.created,
                "content_hash": published.content_hash,
                "path": dg.MetadataValue.path(str(published.path)),
            }
        )

    return [_train, _publish], [_gate]
