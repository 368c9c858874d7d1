"""The GPU production form of a ``LinearHeadsModel``: one ONNX graph, converted by skl2onnx.

A ``LinearHeadsModel`` is exactly scikit-learn's ``StandardScaler`` followed by one
multinomial ``LogisticRegression`` per head, so the export rebuilds those estimators with the
model's weights (nothing is fitted) and lets skl2onnx convert them: the scaler once, then each
head on the scaler's output. skl2onnx converts one estimator per graph and
``onnx.compose.merge_models`` refuses two graphs that read the same input, so the converted
graphs are joined here under the one input tensor, each head's internal names prefixed.

Two conversion options keep the graph GPU-friendly and its maths identical to
``LinearHeadsModel.predict_proba``:

* the scaler divides (``div="div"``: ``(x - mean) / scale``) instead of skl2onnx's default
  multiplication by ``1 / scale``;
* ``LinearClassifier`` (an ``ai.onnx.ml`` operator, which ONNX Runtime runs on CPU only and
  TensorRT cannot take) is refused, so skl2onnx emits ``MatMul``, ``Add`` and ``Softmax``.

The graph has the served contract: one FP32 input ``[batch, n_features]`` named like the
catalog's ``input_tensor``, and one FP32 ``<head>_probs`` output ``[batch, n_labels]`` per head.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from aios_dagster.lib.serving.config_render import check_input_name, render_config
from aios_dagster.lib.serving.linear_model import LinearHead, LinearHeadsModel

if TYPE_CHECKING:
    import onnx

#: Default-domain opset of the graph: Softmax over the last axis (13+), and old enough for
#: the ONNX Runtime and TensorRT of Triton images from 2023 on.
ONNX_OPSET = 17
#: The scaler's output, read by every head; a '/' keeps it apart from any input tensor name.
_SCALED = "standardise/features"


def _scaler(model: LinearHeadsModel) -> Any:
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_ = model.mean.astype(np.float64)
    scaler.scale_ = model.scale.astype(np.float64)
    scaler.var_ = scaler.scale_**2
    scaler.n_features_in_ = model.n_features
    scaler.n_samples_seen_ = 1
    return scaler


def _logistic_regression(head: LinearHead) -> Any:
    """The head as a fitted multinomial ``LogisticRegression`` with the same probabilities.

    scikit-learn represents a two-label head as one logit ``d`` with ``P(label 1) =
    sigmoid(d)``; softmax over two logits is that with ``d = l1 - l0``.
    """
    from sklearn.linear_model import LogisticRegression

    n_labels = len(head.labels)
    if n_labels < 2:
        raise ValueError(
            f"head {head.name!r} has {n_labels} label; a classifier head needs at least two "
            "to be exported to ONNX"
        )
    coef = head.coef.astype(np.float64)
    intercept = head.intercept.astype(np.float64)
    lr = LogisticRegression()
    if n_labels == 2:
        lr.coef_ = coef[1:] - coef[:1]
        lr.intercept_ = intercept[1:] - intercept[:1]
    else:
        lr.coef_ = coef
        lr.intercept_ = intercept
    lr.classes_ = np.arange(n_labels)  # the label output is dropped; names live in the config
    lr.n_features_in_ = coef.shape[1]
    return lr


def _convert(estimator: Any, input_name: str, n_features: int, options: dict[str, Any]) -> Any:
    import skl2onnx
    from skl2onnx.common.data_types import FloatTensorType

    return skl2onnx.to_onnx(
        estimator,
        initial_types=[(input_name, FloatTensorType([None, n_features]))],
        options={id(estimator): options},
        black_op={"LinearClassifier"},
        target_opset={"": ONNX_OPSET, "ai.onnx.ml": 3},
    )


def _only(graph_model: onnx.ModelProto, inputs: list[str], output: str) -> onnx.GraphProto:
    """The nodes that compute ``output`` from ``inputs`` (drops the label branch)."""
    from onnx.utils import Extractor

    extracted = Extractor(graph_model).extract_model(inputs, [output])
    del extracted.graph.value_info[:]  # shape hints only; they would collide across heads
    return extracted.graph


def to_onnx(model: LinearHeadsModel, input_name: str) -> bytes:
    """The serialized ONNX model of ``model`` (checked with ``onnx.checker``)."""
    import onnx
    from onnx import compose, helper

    check_input_name(input_name)
    n = model.n_features
    scaler = _convert(_scaler(model), input_name, n, {"div": "div"})
    scaled = _only(scaler, [input_name], scaler.graph.output[0].name)
    nodes = list(scaled.node)
    initializers = list(scaled.initializer)
    rename = {scaled.output[0].name: _SCALED}
    for node in nodes:
        node.output[:] = [rename.get(name, name) for name in node.output]

    outputs = []
    for head in model.heads:
        converted = _convert(_logistic_regression(head), "scaled", n, {"zipmap": False})
        head_input = converted.graph.input[0].name
        probabilities = converted.graph.output[1].name
        graph = _only(converted, [head_input], probabilities)
        graph = compose.add_prefix_graph(graph, f"{head.name}/", rename_inputs=False)
        for node in graph.node:  # every head reads the one standardised tensor
            node.input[:] = [_SCALED if name == head_input else name for name in node.input]
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        nodes.append(
            helper.make_node("Identity", [graph.output[0].name], [head.output_name], name=head.name)
        )
        outputs.append(
            helper.make_tensor_value_info(
                head.output_name, onnx.TensorProto.FLOAT, [None, len(head.labels)]
            )
        )

    graph = helper.make_graph(
        nodes,
        "linear_heads",
        [helper.make_tensor_value_info(input_name, onnx.TensorProto.FLOAT, [None, n])],
        outputs,
        initializers,
    )
    domains = sorted({node.domain for node in nodes})
    onnx_model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid(domain, ONNX_OPSET if domain == "" else 3) for domain in domains
        ],
        producer_name="aios_dagster",
        doc_string=f"LinearHeadsModel {model.content_hash()}",
    )
    onnx_model.ir_version = scaler.ir_version
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model.SerializeToString()


def onnx_repository_config(
    model_name: str,
    model: LinearHeadsModel,
    *,
    max_batch_size: int,
    input_name: str,
    versions: Sequence[int],
    parameters: Mapping[str, str] | None = None,
) -> str:
    """``config.pbtxt`` of the ONNX form: ONNX Runtime on a GPU instance, TensorRT accelerated.

    Same tensors and parameters as the Python form (``feature_names``, ``labels_<head>``,
    and the deployment's ``parameters``). ``project_versions(..., form="onnx")`` writes a whole
    repository with this config; this function is for callers that only need the text.
    """
    return render_config(
        model_name,
        model,
        max_batch_size=max_batch_size,
        versions=list(versions),
        extra_parameters=parameters,
        input_name=input_name,
        form="onnx",
    )
