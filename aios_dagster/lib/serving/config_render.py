"""Rendering Triton ``config.pbtxt`` for the two serving forms of a ``LinearHeadsModel``.

Both forms announce the same contract, so a client (or a scorer) cannot tell them apart: one
FP32 input of ``n_features`` columns named by the catalog's ``input_tensor``, one
``<head>_probs`` FP32 output per head, and string parameters ``feature_names`` and
``labels_<head>`` that clients read instead of shipping label lists. What differs is how Triton
runs the version directories:

* ``python``: the self-contained Python backend (``python_backend/model.py``) on CPU, the form
  served locally (the pytriton wheel's ``tritonserver`` has only the Python backend);
* ``onnx``: ``platform: "onnxruntime_onnx"`` on a GPU instance, with TensorRT as the GPU
  execution accelerator, the production form for the NGC Triton image. TensorRT is asked for
  FP32 because FP16 would break the agreement the tests hold the two forms to.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Literal

from aios_dagster.lib.serving.linear_model import LinearHeadsModel

ServingForm = Literal["python", "onnx"]
SERVING_FORMS: tuple[ServingForm, ...] = ("python", "onnx")
DEFAULT_INPUT_NAME = "features"
_TENSOR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _runtime_and_placement(
    form: ServingForm, input_name: str, n_features: int, max_batch_size: int
) -> tuple[str, str]:
    """The lines that differ between the forms: what runs a version and on which device.

    The ONNX form pins TensorRT's optimisation profile to the batch range Triton's dynamic
    batcher can produce (1 to ``max_batch_size`` rows): without it ONNX Runtime rebuilds the
    engine whenever a larger batch than any seen before arrives, a stall of seconds in
    production traffic.
    """
    if form == "python":
        return 'backend: "python"', "instance_group [ { kind: KIND_CPU count: 1 } ]"
    if form != "onnx":
        raise ValueError(f"serving form {form!r} is not one of {SERVING_FORMS}")
    trt = {
        "precision_mode": "FP32",
        "trt_profile_min_shapes": f"{input_name}:1x{n_features}",
        "trt_profile_opt_shapes": f"{input_name}:{max_batch_size}x{n_features}",
        "trt_profile_max_shapes": f"{input_name}:{max_batch_size}x{n_features}",
    }
    trt_params = "".join(
        f"  parameters {{ key: {quote(k)} value: {quote(v)} }}\n" for k, v in trt.items()
    )
    return (
        'platform: "onnxruntime_onnx"',
        "instance_group [ { kind: KIND_GPU count: 1 } ]\n"
        "optimization { execution_accelerators { gpu_execution_accelerator: [ {\n"
        f'  name: "tensorrt"\n{trt_params}'
        "} ] } }",
    )


def check_input_name(input_name: str) -> None:
    """Refuse a tensor name Triton or a config parameter could not carry."""
    if not _TENSOR_NAME.match(input_name):
        raise ValueError(
            f"input tensor name {input_name!r} must be a letter or '_' followed by letters, "
            "digits or '_'"
        )


def quote(value: str) -> str:
    """A protobuf text-format string literal (a JSON string literal is one)."""
    return json.dumps(value)


def signature_parameters(model: LinearHeadsModel) -> dict[str, str]:
    """The parameters clients read the model's meaning from: feature names and labels."""
    params = {"feature_names": ",".join(model.feature_names)}
    params.update({f"labels_{h.name}": ",".join(h.labels) for h in model.heads})
    return params


def render_config(
    model_name: str,
    model: LinearHeadsModel,
    *,
    max_batch_size: int,
    versions: Sequence[int] | None,
    extra_parameters: Mapping[str, str] | None = None,
    input_name: str = DEFAULT_INPUT_NAME,
    form: ServingForm = "python",
) -> str:
    """``config.pbtxt`` text; ``versions=None`` means ``version_policy: { all {} }``.

    ``extra_parameters`` become further string parameters (the deployment's ``aios_*``
    aliases, ``delay_ms`` for fault drills); they may not shadow the signature parameters
    clients rely on.
    """
    check_input_name(input_name)
    if max_batch_size < 1:
        raise ValueError("max_batch_size must be >= 1")
    if versions is None:
        policy = "version_policy: { all {} }"
    else:
        policy = f"version_policy: {{ specific {{ versions: [{', '.join(map(str, versions))}] }} }}"
    outputs = ",\n".join(
        f"  {{ name: {quote(h.output_name)} data_type: TYPE_FP32 dims: [ {len(h.labels)} ] }}"
        for h in model.heads
    )
    params = signature_parameters(model)
    for key, value in (extra_parameters or {}).items():
        if key in params:
            raise ValueError(f"extra parameter {key!r} would shadow a signature parameter")
        params[key] = str(value)
    parameters = "\n".join(
        f"parameters: {{ key: {quote(k)} value: {{ string_value: {quote(v)} }} }}"
        for k, v in params.items()
    )
    runtime, placement = _runtime_and_placement(form, input_name, model.n_features, max_batch_size)
    return (
        f"# Written by aios_dagster.lib.serving ({form} form); describes every listed version.\n"
        f"name: {quote(model_name)}\n"
        f"{runtime}\n"
        f"max_batch_size: {max_batch_size}\n"
        f"{policy}\n"
        f"input [\n"
        f"  {{ name: {quote(input_name)} data_type: TYPE_FP32 dims: [ {model.n_features} ] }}\n"
        f"]\n"
        f"output [\n{outputs}\n]\n"
        f"dynamic_batching {{ }}\n"
        f"{placement}\n"
        f"{parameters}\n"
    )
