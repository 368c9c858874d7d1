"""Score a feature table through Triton and turn probabilities into auditable decisions.

Every prediction row says which model and version produced it, a hash of the exact input
vector, the policy and threshold applied, and the run: enough to answer "why was this ticket
routed there" long after the model has been replaced.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.serving.triton import (
    InferenceResult,
    TritonPermanentError,
    TritonResource,
    labels_from_config,
)

PREDICTION_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("input_hash", pa.string()),
        ("policy", pa.string()),
        ("min_confidence", pa.float64()),
        ("decision", pa.string()),
        ("needs_review", pa.bool_()),
        ("run_id", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)


def input_hashes(matrix: np.ndarray) -> list[str]:
    """sha256 of each row's float32 bytes: proves which exact input a decision saw."""
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    return [hashlib.sha256(r.tobytes()).hexdigest()[:32] for r in rows]


def decisions_table(
    spec: ModelSpec,
    record_ids: list[str],
    matrix: np.ndarray,
    result: InferenceResult,
    labels: dict[str, tuple[str, ...]],
    run_id: str,
) -> pa.Table:
    """Per-record decision rows: each head's label and confidence, the policy outcome."""
    n = len(record_ids)
    columns: dict[str, pa.Array | list] = {
        "record_id": record_ids,
        "model_name": [result.model_name] * n,
        "model_version": [result.model_version] * n,
        "input_hash": input_hashes(matrix),
        "policy": [spec.policy.name] * n,
        "min_confidence": [spec.policy.min_confidence] * n,
    }
    head_fields: list[pa.Field] = []
    routing_conf: np.ndarray | None = None
    routing_label: np.ndarray | None = None
    for head in spec.heads:
        probs = result.outputs[f"{head.name}_probs"]
        best = probs.argmax(axis=1) if n else np.zeros(0, dtype=int)
        head_labels = np.asarray(labels[head.name], dtype=object)
        label_values = head_labels[best] if n else np.array([], dtype=object)
        conf = probs[np.arange(n), best].astype(np.float64) if n else np.zeros(0)
        columns[head.name] = label_values.tolist()
        columns[f"{head.name}_confidence"] = conf
        head_fields += [
            pa.field(head.name, pa.string()),
            pa.field(f"{head.name}_confidence", pa.float64()),
        ]
        if routing_conf is None:
            routing_conf, routing_label = conf, label_values
    assert routing_conf is not None and routing_label is not None
    review = routing_conf < spec.policy.min_confidence
    columns["needs_review"] = review
    columns["decision"] = np.where(review, spec.policy.review_queue, routing_label).tolist()
    columns["run_id"] = [run_id] * n
    columns["scored_at"] = [datetime.now(UTC)] * n
    schema = pa.schema(list(PREDICTION_SCHEMA) + head_fields)
    return pa.table({f.name: columns[f.name] for f in schema}, schema=schema)


class ModelSignatureError(TritonPermanentError, ValueError):
    """The served model does not take or produce what the catalog declares (never retried)."""


def check_signature(spec: ModelSpec, config: dict, n_features: int) -> None:
    """Compare Triton's model config with the catalog entry before sending any data.

    A mismatch (renamed tensor, different feature count, missing head) is a deployment error:
    fail with the field named rather than scoring with the wrong columns.
    """
    model = spec.triton_model
    inputs = {i["name"]: i for i in config.get("input", [])}
    if spec.input_tensor not in inputs:
        raise ModelSignatureError(
            f"{model}: catalog input tensor {spec.input_tensor!r} not served "
            f"(served inputs: {sorted(inputs)})"
        )
    dims = [int(d) for d in inputs[spec.input_tensor].get("dims", [])]
    if dims != [n_features]:
        raise ModelSignatureError(
            f"{model}: input {spec.input_tensor!r} has dims {dims} on Triton but the catalog "
            f"builds {n_features} features ({len(spec.numeric_features)} numeric + vectors)"
        )
    if inputs[spec.input_tensor].get("data_type") != "TYPE_FP32":
        raise ModelSignatureError(
            f"{model}: input {spec.input_tensor!r} is "
            f"{inputs[spec.input_tensor].get('data_type')} on Triton, the catalog sends TYPE_FP32"
        )
    outputs = {o["name"] for o in config.get("output", [])}
    missing = [f"{h.name}_probs" for h in spec.heads if f"{h.name}_probs" not in outputs]
    if missing:
        raise ModelSignatureError(
            f"{model}: outputs {missing} declared by the catalog heads are not served "
            f"(served outputs: {sorted(outputs)})"
        )


def score(
    spec: ModelSpec,
    table: pa.Table | pa.RecordBatch,
    triton: TritonResource,
    run_id: str,
    *,
    model_version: str = "",
) -> tuple[pa.Table, InferenceResult]:
    """Score every row of ``table`` (feature rows with the spec's id column).

    ``model_version`` pins the version (later batches of one day use the first batch's).
    Requests name the catalog's ``input_tensor``, which ``check_signature`` found served.
    Transient Triton failures are retried inside the resource; what reaches the caller is
    either ``TritonTransientError`` (the retry budget ran out) or permanent (``is_permanent``).
    """
    matrix = spec.build_matrix(table)
    config = triton.get_model_config(spec.triton_model)  # one read: signature and labels
    check_signature(spec, config, matrix.shape[1])
    outputs = [f"{h.name}_probs" for h in spec.heads]
    result = triton.infer(
        spec.triton_model,
        matrix,
        outputs,
        model_version=model_version,
        input_name=spec.input_tensor,
    )
    labels = labels_from_config(config)
    ids = [str(v) for v in table.column(spec.id_column).to_pylist()]
    return decisions_table(spec, ids, matrix, result, labels, run_id), result
