"""Scoring refuses to send data when the served model disagrees with the catalog."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from aios_dagster.lib.inference.batch import ModelSignatureError, score
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.model_repository import publish_linear_model
from aios_dagster.lib.serving.triton import TritonPermanentError, TritonResource, is_permanent
from tests.triton_fixtures import assert_matches_model, numeric_spec, random_features


def _table(numeric: int, rows: int = 5) -> pa.Table:
    cols = {f"x{i}": [float(i)] * rows for i in range(numeric)}
    return pa.table({"id": [f"r{j}" for j in range(rows)], **cols})


def test_matching_signature_scores(publish_random_model, triton_resource: TritonResource) -> None:
    published = publish_random_model(n_features=16)
    triton_resource.load_model(published.name)
    decisions, result = score(
        numeric_spec(published.name, 16), _table(16), triton_resource, "run-1"
    )
    assert decisions.num_rows == 5 and result.model_version == "1"


def test_feature_count_mismatch_names_the_tensor(
    publish_random_model, triton_resource: TritonResource
) -> None:
    published = publish_random_model(n_features=16)
    triton_resource.load_model(published.name)
    with pytest.raises(
        ModelSignatureError, match=r"'features' has dims \[16\].*catalog builds 13"
    ) as excinfo:
        score(numeric_spec(published.name, 13), _table(13), triton_resource, "run-1")
    assert is_permanent(excinfo.value)  # the asset fails without retry


def test_missing_head_output_is_named(
    publish_random_model, triton_resource: TritonResource
) -> None:
    published = publish_random_model(n_features=16, heads={"queue": 6})
    triton_resource.load_model(published.name)
    with pytest.raises(ModelSignatureError, match=r"\['priority_probs'\]"):
        score(numeric_spec(published.name, 16), _table(16), triton_resource, "run-1")


def test_the_catalog_input_tensor_name_is_served_and_scored(
    triton_repository: Path, triton_resource: TritonResource
) -> None:
    """A model whose input is not called "features" is published, served and scored."""
    model = LinearHeadsModel.random(16, {"queue": 6, "priority": 3}, seed=21)
    publish_linear_model(triton_repository, "named_input", model, input_name="x_in")
    triton_resource.load_model("named_input")
    config = triton_resource.get_model_config("named_input")
    assert [tensor["name"] for tensor in config["input"]] == ["x_in"]

    x = random_features(2500, 16)  # three requests
    table = pa.table({"id": [f"r{j}" for j in range(2500)]} | {f"x{i}": x[:, i] for i in range(16)})
    spec = numeric_spec("named_input", 16, input_tensor="x_in")
    decisions, result = score(spec, table, triton_resource, "run-1")
    assert decisions.num_rows == 2500 and result.requests == 3
    assert_matches_model(result.outputs, model, x)
    expected = model.predict_proba(x)["queue"].argmax(axis=1)
    labels = np.asarray(model.heads[0].labels)
    assert decisions.column("queue").to_pylist() == labels[expected].tolist()

    # The name is really what the request carries: the old hard-coded one is refused.
    with pytest.raises(TritonPermanentError, match="features"):
        triton_resource.infer("named_input", x[:10], list(result.outputs))


def test_publishing_uses_the_declared_input_tensor(
    tmp_path: Path, triton_repository: Path, triton_resource: TritonResource
) -> None:
    """The model Component's publish asset serves the registry's champion under the declared
    tensor name."""
    import dagster as dg

    from aios_dagster.lib.lifecycle.assets import build_model_defs
    from aios_dagster.lib.lifecycle.store import ModelStore
    from tests.lifecycle.registry_support import fresh_registry, lineage_for

    spec = numeric_spec("declared_input", 16, input_tensor="x_in")
    registry = fresh_registry(tmp_path)
    model = LinearHeadsModel.random(16, {"queue": 6, "priority": 3}, seed=5)
    version = registry.register(
        spec.name, model, params={}, metrics={}, lineage=lineage_for(model)
    ).version
    registry.set_version_tags(spec.name, version, {"gate": "passed"})
    assets, _checks = build_model_defs(spec)
    with dg.instance_for_test() as instance:
        # What the candidate asset reports when it registered the version.
        instance.report_runless_asset_event(
            dg.AssetMaterialization(
                f"{spec.name}_candidate", metadata={"registry_version": version}
            )
        )
        published = dg.materialize(
            [a for a in assets if a.key == dg.AssetKey(f"{spec.name}_published")],
            resources={
                "models": ModelStore(repository=str(triton_repository)),
                "triton": triton_resource,
                "registry": registry,
            },
            instance=instance,
        )
    assert published.success
    config = triton_resource.get_model_config("declared_input")
    assert [tensor["name"] for tensor in config["input"]] == ["x_in"]
    assert config["parameters"]["aios_champion_version"]["string_value"] == str(version)
    decisions, _ = score(spec, _table(16), triton_resource, "run-1")
    assert decisions.num_rows == 5
