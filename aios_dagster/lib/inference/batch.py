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
from aios_dagster.lib.serving.triton import InferenceResult, TritonResource

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


def score(
    spec: ModelSpec,
    table: pa.Table,
    triton: TritonResource,
    run_id: str,
) -> tuple[pa.Table, InferenceResult]:
    """Score every row of ``table`` (feature rows with the spec's id column)."""
    matrix = spec.build_matrix(table)
    outputs = [f"{h.name}_probs" for h in spec.heads]
    result = triton.infer(spec.triton_model, matrix, outputs)
    labels = triton.model_labels(spec.triton_model)
    ids = [str(v) for v in table.column(spec.id_column).to_pylist()]
    return decisions_table(spec, ids, matrix, result, labels, run_id), result
