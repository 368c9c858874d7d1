"""The ONNX (GPU production) form agrees with the Python form Triton serves, on the same rows.

The pytriton wheel's ``tritonserver`` ships only the Python backend, so the ONNX form runs in
onnxruntime in process here; its config is checked by parsing it with Triton's own
``ModelConfig`` protobuf, field by field against the Python form's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from aios_dagster.lib.serving.config_render import render_config
from aios_dagster.lib.serving.linear_model import LinearHead, LinearHeadsModel
from aios_dagster.lib.serving.model_repository import VersionConflictError, project_versions
from aios_dagster.lib.serving.onnx_export import onnx_repository_config, to_onnx
from aios_dagster.lib.serving.triton import TritonResource
from tests.triton_fixtures import ATOL, random_features

HEADS = {"queue": 6, "priority": 3, "escalate": 2}  # a two-label head takes sklearn's binary path
N_FEATURES = 16
DEPLOYMENT = {
    "aios_champion_version": "1",
    "aios_challenger_version": "2",
    "aios_canary_share": "0.1",
}


@pytest.fixture(scope="module")
def model() -> LinearHeadsModel:
    return LinearHeadsModel.random(N_FEATURES, HEADS, seed=7)


@pytest.fixture(scope="module")
def onnx_bytes(model: LinearHeadsModel) -> bytes:
    return to_onnx(model, "features")


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    """Ordinary rows plus extremes: saturated softmax, huge and tiny magnitudes, zeros."""
    x = random_features(200, N_FEATURES, seed=3)
    extremes = np.zeros((8, N_FEATURES), dtype=np.float32)
    extremes[1] = 1e4
    extremes[2] = -1e4
    extremes[3, ::2] = 1e6
    extremes[3, 1::2] = -1e6
    extremes[4] = 1e30
    extremes[5] = -1e30
    extremes[6] = 1e-30
    extremes[7] = np.float32(np.finfo(np.float32).tiny)
    return np.concatenate([x, extremes])


def run_onnx(onnx_model: bytes, x: np.ndarray, input_name: str = "features") -> dict:
    session = ort.InferenceSession(onnx_model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {input_name: x}), strict=True))


def parse(config_text: str) -> mc.ModelConfig:
    return text_format.Parse(config_text, mc.ModelConfig())


def test_graph_has_the_served_contract_in_gpu_runnable_operators(
    model: LinearHeadsModel, onnx_bytes: bytes
) -> None:
    graph = onnx.load_from_string(onnx_bytes)
    onnx.checker.check_model(graph, full_check=True)
    [tensor] = graph.graph.input
    assert tensor.name == "features"
    batch, width = tensor.type.tensor_type.shape.dim
    assert not batch.dim_value and width.dim_value == N_FEATURES  # any batch size, 16 columns
    assert [(o.name, o.type.tensor_type.shape.dim[1].dim_value) for o in graph.graph.output] == [
        (h.output_name, len(h.labels)) for h in model.heads
    ]
    # ai.onnx.ml operators run on CPU only in ONNX Runtime and TensorRT cannot take them.
    assert {node.domain for node in graph.graph.node} == {""}
    assert {"Sub", "Div", "MatMul", "Add", "Softmax"} <= {n.op_type for n in graph.graph.node}
    assert "LinearClassifier" not in {n.op_type for n in graph.graph.node}


def test_input_name_is_the_catalogs(model: LinearHeadsModel, rows: np.ndarray) -> None:
    renamed = to_onnx(model, "x_in")
    assert [t.name for t in onnx.load_from_string(renamed).graph.input] == ["x_in"]
    got = run_onnx(renamed, rows, input_name="x_in")
    expected = model.predict_proba(rows)
    for head in model.heads:
        np.testing.assert_allclose(got[head.output_name], expected[head.name], atol=ATOL, rtol=0)
    with pytest.raises(ValueError, match="input tensor name"):
        to_onnx(model, "x in")


def test_onnxruntime_matches_the_in_process_model(
    model: LinearHeadsModel, onnx_bytes: bytes, rows: np.ndarray
) -> None:
    got = run_onnx(onnx_bytes, rows)
    expected = model.predict_proba(rows)
    for head in model.heads:
        probs = got[head.output_name]
        assert probs.dtype == np.float32 and probs.shape == (len(rows), len(head.labels))
        np.testing.assert_allclose(probs, expected[head.name], atol=ATOL, rtol=0)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        # Not a vacuous match: ordinary rows spread their probability, the extremes saturate.
        assert np.median(probs[:200].max(axis=1)) < 0.99
        assert probs[201:206].max(axis=1).min() > 0.99


def test_onnxruntime_matches_the_python_form_served_by_triton(
    triton_repository: Path,
    triton_resource: TritonResource,
    model: LinearHeadsModel,
    onnx_bytes: bytes,
    rows: np.ndarray,
) -> None:
    project_versions(
        triton_repository,
        "onnx_parity",
        {3: model},
        parameters={
            "aios_champion_version": "3",
            "aios_challenger_version": "",
            "aios_canary_share": "0.0",
        },
        max_batch_size=512,
        input_name="features",
    )
    triton_resource.load_model("onnx_parity")
    outputs = [h.output_name for h in model.heads]
    served = triton_resource.infer("onnx_parity", rows, outputs, model_version="3")
    assert served.model_version == "3"
    in_process = run_onnx(onnx_bytes, rows)
    for name in outputs:
        np.testing.assert_allclose(in_process[name], served.outputs[name], atol=ATOL, rtol=0)


def test_onnx_repository_serves_each_version_with_the_python_forms_contract(
    tmp_path: Path, model: LinearHeadsModel, rows: np.ndarray
) -> None:
    other = LinearHeadsModel.random(N_FEATURES, HEADS, seed=8)
    versions = {1: model, 2: other}
    projection = project_versions(
        tmp_path / "onnx",
        "m",
        versions,
        parameters=DEPLOYMENT,
        max_batch_size=512,
        input_name="features",
        form="onnx",
    )
    assert projection.written == (1, 2) and projection.form == "onnx"
    for version, expected_model in versions.items():
        served = run_onnx(
            (tmp_path / "onnx" / "m" / str(version) / "model.onnx").read_bytes(), rows
        )
        expected = expected_model.predict_proba(rows)
        for head in expected_model.heads:
            np.testing.assert_allclose(served[head.output_name], expected[head.name], atol=ATOL)

    onnx_config = parse((tmp_path / "onnx" / "m" / "config.pbtxt").read_text())
    assert onnx_config.platform == "onnxruntime_onnx" and not onnx_config.backend
    assert [g.kind for g in onnx_config.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    [accelerator] = onnx_config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP32"
    assert accelerator.parameters["trt_profile_max_shapes"] == f"features:512x{N_FEATURES}"
    assert onnx_config.HasField("dynamic_batching")
    assert list(onnx_config.version_policy.specific.versions) == [1, 2]
    assert onnx_config.max_batch_size == 512

    python_config = parse(
        render_config(
            "m",
            model,
            max_batch_size=512,
            versions=[1, 2],
            extra_parameters=DEPLOYMENT,
            input_name="features",
        )
    )
    assert python_config.backend == "python"
    for field in ("name", "max_batch_size", "input", "output", "parameters", "version_policy"):
        assert getattr(onnx_config, field) == getattr(python_config, field), field
    assert onnx_config.parameters["labels_escalate"].string_value == "escalate_0,escalate_1"
    assert (
        onnx_repository_config(
            "m",
            model,
            max_batch_size=512,
            input_name="features",
            versions=[1, 2],
            parameters=DEPLOYMENT,
        )
        == (tmp_path / "onnx" / "m" / "config.pbtxt").read_text()
    )


def test_one_model_directory_serves_one_form(tmp_path: Path, model: LinearHeadsModel) -> None:
    deployment = {**DEPLOYMENT, "aios_challenger_version": "", "aios_canary_share": "0.0"}
    project_versions(
        tmp_path, "m", {1: model}, parameters=deployment, max_batch_size=8, input_name="features"
    )
    with pytest.raises(VersionConflictError, match="holds the python form"):
        project_versions(
            tmp_path,
            "m",
            {1: model},
            parameters=deployment,
            max_batch_size=8,
            input_name="features",
            form="onnx",
        )


def test_a_head_with_one_label_is_refused() -> None:
    lonely = LinearHeadsModel(
        feature_names=("a", "b"),
        mean=np.zeros(2),
        scale=np.ones(2),
        heads=(LinearHead("only", ("yes",), np.ones((1, 2)), np.zeros(1)),),
    )
    with pytest.raises(ValueError, match="head 'only' has 1 label"):
        to_onnx(lonely, "features")
