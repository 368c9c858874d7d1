"""Scoring refuses to send data when the served model disagrees with the catalog."""

import pyarrow as pa
import pytest

from aios_dagster.lib.inference.batch import ModelSignatureError, score
from aios_dagster.lib.inference.catalog import DecisionPolicy, HeadSpec, ModelSpec
from aios_dagster.lib.serving.triton import TritonResource


def _spec(model: str, numeric: int, heads: tuple[str, ...] = ("queue", "priority")) -> ModelSpec:
    return ModelSpec(
        name="t",
        triton_model=model,
        feature_table="f",
        training_table="t",
        id_column="id",
        time_column="ts",
        numeric_features=tuple(f"x{i}" for i in range(numeric)),
        vector_features=(),
        heads=tuple(HeadSpec(h, h) for h in heads),
        policy=DecisionPolicy("p", 0.5, "human_review"),
        min_holdout_accuracy=0.5,
    )


def _table(numeric: int, rows: int = 5) -> pa.Table:
    cols = {f"x{i}": [float(i)] * rows for i in range(numeric)}
    return pa.table({"id": [f"r{j}" for j in range(rows)], **cols})


def test_matching_signature_scores(publish_random_model, triton_resource: TritonResource) -> None:
    published = publish_random_model(n_features=16)
    triton_resource.load_model(published.name)
    decisions, result = score(_spec(published.name, 16), _table(16), triton_resource, "run-1")
    assert decisions.num_rows == 5 and result.model_version == "1"


def test_feature_count_mismatch_names_the_tensor(
    publish_random_model, triton_resource: TritonResource
) -> None:
    published = publish_random_model(n_features=16)
    triton_resource.load_model(published.name)
    with pytest.raises(ModelSignatureError, match=r"'features' has dims \[16\].*catalog builds 13"):
        score(_spec(published.name, 13), _table(13), triton_resource, "run-1")


def test_missing_head_output_is_named(
    publish_random_model, triton_resource: TritonResource
) -> None:
    published = publish_random_model(n_features=16, heads={"queue": 6})
    triton_resource.load_model(published.name)
    with pytest.raises(ModelSignatureError, match=r"\['priority_probs'\]"):
        score(_spec(published.name, 16), _table(16), triton_resource, "run-1")
