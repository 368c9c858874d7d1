"""The registry on a real embedded MLflow store: runs, versions, artifacts, idempotency."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import numpy as np
import pytest

from aios_dagster.lib.lifecycle.registry import ModelRegistry, RegistryError
from aios_dagster.resources import build_resources
from aios_dagster.settings import Settings
from tests.lifecycle.registry_support import fresh_registry, lineage_for, register, tiny_model


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return fresh_registry(tmp_path)


def test_register_logs_one_run_and_one_tagged_version(registry: ModelRegistry, tmp_path: Path):
    model = tiny_model(1)
    extra = tmp_path / "report.txt"
    extra.write_text("from a file")
    registered = registry.register(
        "router",
        model,
        params={"seed": 1, "gate": {"margin": 0.02}, "features": ["f0", "f1"]},
        metrics={"holdout_accuracy_queue": 0.81},
        lineage=lineage_for(model, run_id="dagster-run-42"),
        artifacts={"model.onnx": b"\x08\x01", "notes/readme.md": "# hi", "report.txt": extra},
    )
    assert (registered.version, registered.created) == (1, True)
    assert registered.content_hash == model.content_hash()

    run = registry.client.get_run(registered.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == {"seed": "1", "gate.margin": "0.02", "features": '["f0", "f1"]'}
    assert run.data.metrics == {"holdout_accuracy_queue": 0.81}
    assert run.data.tags["dagster.run_id"] == "dagster-run-42"
    assert registry.version_params("router", 1)["gate.margin"] == "0.02"
    assert registry.version_metrics("router", 1) == {"holdout_accuracy_queue": 0.81}

    tags = registry.version_tags("router", 1)
    assert tags["content_hash"] == model.content_hash()
    assert tags["git_commit"] == "abc123" and tags["dagster_run_id"] == "dagster-run-42"
    assert tags["rows_train"] == "800"

    assert registry.read_version_artifact("router", 1, "model.onnx") == b"\x08\x01"
    assert registry.read_version_artifact("router", 1, "notes/readme.md") == b"# hi"
    assert registry.read_version_artifact("router", 1, "report.txt") == b"from a file"
    assert registry.lineage("router", 1) == lineage_for(model, run_id="dagster-run-42")
    # The artifacts are where the settings say, not in the current folder.
    assert Path(run.info.artifact_uri).is_relative_to(Path(registry.artifact_location))
    # MLflow was imported with its telemetry off: nothing tries to reach the internet.
    from mlflow.telemetry import get_telemetry_client

    assert get_telemetry_client() is None


def test_identical_weights_return_the_existing_version_without_a_new_run(registry):
    first = registry.register(
        "router", tiny_model(1), params={}, metrics={}, lineage=lineage_for(tiny_model(1))
    )
    again = registry.register(
        "router", tiny_model(1), params={}, metrics={}, lineage=lineage_for(tiny_model(1))
    )
    other = registry.register(
        "router", tiny_model(2), params={}, metrics={}, lineage=lineage_for(tiny_model(2))
    )
    assert (again.version, again.created, again.run_id) == (1, False, first.run_id)
    assert (other.version, other.created) == (2, True)
    experiment = registry.client.get_experiment_by_name("router")
    runs = registry.client.search_runs([experiment.experiment_id])
    assert len(runs) == 2


def test_load_model_gives_back_the_registered_weights(registry: ModelRegistry):
    register(registry, 3)
    loaded = registry.load_model("router", 1)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    expected = tiny_model(3).predict_proba(x)
    for head, probs in loaded.predict_proba(x).items():
        np.testing.assert_array_equal(probs, expected[head])


def test_weights_changed_behind_the_registry_are_refused(registry: ModelRegistry):
    register(registry, 1)
    run_id = registry.version("router", 1).run_id
    weights = Path(registry.client.get_run(run_id).info.artifact_uri) / "model" / "weights.npz"
    tiny_model(9).to_npz(weights)
    with pytest.raises(RegistryError, match="artifact store was changed behind the registry"):
        registry.load_model("router", 1)


def test_versions_list_tags_aliases_and_decisions(registry: ModelRegistry):
    v1, v2 = register(registry, 1), register(registry, 2)
    registry.set_alias("router", "champion", v1, actor="ann", reason="first")
    registry.set_alias("router", "challenger", v2, actor="ann", reason="shadow")
    registry.record_decision("router", v2, "approved", actor="bob", reason="shadow agrees")
    infos = registry.versions("router")
    assert [(i.version, i.aliases) for i in infos] == [(1, ("champion",)), (2, ("challenger",))]
    assert infos[1].approval is not None and infos[1].approval.actor == "bob"
    assert infos[0].approval is None
    assert infos[0].content_hash == tiny_model(1).content_hash()
    assert registry.version("router", 2) == infos[1]


def test_version_artifacts_replace_and_missing_ones_say_so(registry: ModelRegistry):
    register(registry, 1)
    registry.log_version_artifacts("router", 1, {"gate.json": '{"passed": false}'})
    registry.log_version_artifacts("router", 1, {"gate.json": '{"passed": true}'})
    assert registry.read_version_artifact("router", 1, "gate.json") == b'{"passed": true}'
    with pytest.raises(FileNotFoundError, match=r"router v1 has no artifact 'evaluation\.json'"):
        registry.read_version_artifact("router", 1, "evaluation.json")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        registry.read_version_artifact("router", 1, "model")


def test_refusals_name_the_thing_and_the_rule(registry: ModelRegistry):
    register(registry, 1)
    with pytest.raises(RegistryError, match=r"router v7 does not exist .*versions: \[1\]"):
        registry.load_model("router", 7)
    with pytest.raises(
        RegistryError, match=r"no registered model 'nope' \(registered: \['router'\]\)"
    ):
        registry.versions("nope")
    with pytest.raises(ValueError, match="written by the registry itself"):
        register(registry, 2, artifacts={"lineage.json": "{}"})
    with pytest.raises(ValueError, match="must be relative"):
        registry.log_version_artifacts("router", 1, {"../escape.txt": "x"})
    model = tiny_model(3)
    with pytest.raises(ValueError, match="does not match the model's weights"):
        registry.register(
            "router", model, params={}, metrics={}, lineage=lineage_for(tiny_model(4))
        )
    assert registry.get_alias("nope", "champion") is None


def test_a_failed_registration_leaves_a_failed_run_and_no_version(registry: ModelRegistry):
    model = tiny_model(5)
    with pytest.raises(FileNotFoundError):
        registry.register(
            "router",
            model,
            params={},
            metrics={},
            lineage=lineage_for(model),
            artifacts={"missing.bin": Path("/nonexistent/file")},
        )
    assert registry.versions("router") == []
    experiment = registry.client.get_experiment_by_name("router")
    [run] = registry.client.search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    # Trying again works and numbers the version 1.
    assert register(registry, 5) == 1


def test_settings_pick_the_embedded_or_the_production_registry(tmp_path: Path) -> None:
    embedded = build_resources(Settings.from_env({"AIOS_DATA_DIR": str(tmp_path)}))["registry"]
    assert embedded.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert embedded.artifact_location == f"{tmp_path}/mlflow/artifacts"
    production = {
        "AIOS_DATA_DIR": str(tmp_path),
        "AIOS_PROFILE": "production",
        "AIOS_PII_KEY": "k",
        "AIOS_MLFLOW_TRACKING_URI": "postgresql+psycopg://mlflow:secret@db/mlflow",
        "AIOS_MLFLOW_ARTIFACT_LOCATION": "s3://models/mlflow",
    }
    registry = build_resources(Settings.from_env(production))["registry"]
    # The URI carries the password: the resource reads it from the environment at run time.
    assert isinstance(registry.tracking_uri, dg.EnvVar)
    assert registry.tracking_uri.env_var_name == "AIOS_MLFLOW_TRACKING_URI"
    assert registry.artifact_location == "s3://models/mlflow"
    del production["AIOS_MLFLOW_ARTIFACT_LOCATION"]
    with pytest.raises(ValueError, match=r"requires AIOS_MLFLOW_TRACKING_URI .* to be set"):
        build_resources(Settings.from_env(production))
