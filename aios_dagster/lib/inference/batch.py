"""Score a feature table through Triton and turn probabilities into auditable decisions.

Every prediction row says which model and version decided it (and whether it got there as a
champion or a canary row), a hash of the exact input vector, the policy and threshold applied,
and the run: enough to answer "why was this ticket routed there" long after the model has been
replaced. Which versions decide is read from Triton's model config (see ``canary``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from aios_dagster.lib.inference.canary import Deployment, canary_bucket, canary_mask
from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.serving.triton import (
    InferenceResult,
    TritonPermanentError,
    TritonResource,
    labels_from_config,
)

__all__ = [
    "PREDICTION_SCHEMA",
    "ROUTE_CANARY",
    "ROUTE_CHAMPION",
    "ROUTE_SHADOW",
    "Deployment",
    "ModelSignatureError",
    "Scored",
    "canary_bucket",
    "check_signature",
    "decisions_table",
    "input_hashes",
    "score",
    "score_version",
]

PREDICTION_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),  # the version that decided this row
        ("route", pa.string()),  # "champion" | "canary" ("shadow" in the shadow dataset only)
        ("input_hash", pa.string()),
        ("policy", pa.string()),
        ("min_confidence", pa.float64()),
        ("decision", pa.string()),
        ("needs_review", pa.bool_()),
        ("run_id", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
    ]
)

ROUTE_CHAMPION = "champion"
ROUTE_CANARY = "canary"
ROUTE_SHADOW = "shadow"


def input_hashes(matrix: np.ndarray) -> list[str]:
    """sha256 of each row's float32 bytes: proves which exact input a decision saw."""
    rows = np.ascontiguousarray(matrix, dtype=np.float32)
    return [hashlib.sha256(r.tobytes()).hexdigest()[:32] for r in rows]


def decisions_table(
    spec: ModelSpec,
    record_ids: list[str],
    matrix: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    labels: dict[str, tuple[str, ...]],
    run_id: str,
    *,
    model_name: str,
    versions: Sequence[str] | np.ndarray,
    routes: Sequence[str] | np.ndarray,
) -> pa.Table:
    """Per-record decision rows: each head's label and confidence, the policy outcome.

    ``outputs`` are the ``<head>_probs`` arrays in row order; ``versions`` and ``routes`` say,
    per row, which version decided it and how the row got there.
    """
    n = len(record_ids)
    columns: dict[str, pa.Array | list | np.ndarray] = {
        "record_id": record_ids,
        "model_name": [model_name] * n,
        "model_version": np.asarray(versions, dtype=object),
        "route": np.asarray(routes, dtype=object),
        "input_hash": input_hashes(matrix),
        "policy": [spec.policy.name] * n,
        "min_confidence": [spec.policy.min_confidence] * n,
    }
    head_fields: list[pa.Field] = []
    routing_conf: np.ndarray | None = None
    routing_label: np.ndarray | None = None
    for head in spec.heads:
        probs = outputs[f"{head.name}_probs"]
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


@dataclass(frozen=True)
class Scored:
    """What scoring one table took, over one or two versions (champion and canary rows).

    ``deployment`` is the one used, with ``champion`` resolved to the version that answered:
    pass it to the next ``score`` call of the same day to pin both versions.
    """

    deployment: Deployment
    model_name: str
    outputs: dict[str, np.ndarray]  # "<head>_probs", rows in input order, each from its decider
    requests: int
    retries: int
    failovers: int
    latencies_ms: list[float]
    canary_rows: int = 0

    @property
    def model_version(self) -> str:
        """The champion version (canary rows name theirs in the decision rows)."""
        return self.deployment.champion

    @property
    def challenger_version(self) -> str:
        return self.deployment.challenger


def _infer(
    spec: ModelSpec, triton: TritonResource, matrix: np.ndarray, version: str
) -> InferenceResult:
    return triton.infer(
        spec.triton_model,
        matrix,
        [f"{h.name}_probs" for h in spec.heads],
        model_version=version,
        input_name=spec.input_tensor,
    )


def _merge(n: int, parts: list[tuple[np.ndarray, InferenceResult]]) -> dict[str, np.ndarray]:
    """Scatter each part's output rows back to their places in the table."""
    merged: dict[str, np.ndarray] = {}
    for name in parts[0][1].outputs:
        width = max(r.outputs[name].shape[1] for _, r in parts)
        out = np.empty((n, width), dtype=np.float32)
        for rows, result in parts:
            if len(rows):
                out[rows] = result.outputs[name]
        merged[name] = out
    return merged


def score(
    spec: ModelSpec,
    table: pa.Table | pa.RecordBatch,
    triton: TritonResource,
    run_id: str,
    *,
    deployment: Deployment | None = None,
) -> tuple[pa.Table, Scored]:
    """Score every row of ``table`` (feature rows with the spec's id column).

    The versions come from Triton's model config (read once, also for the signature check),
    unless ``deployment`` pins them (later batches of one day use the first batch's). Records
    whose ``canary_bucket`` is below the canary share are sent to the challenger (one more
    request set, those rows only); the others to the champion. Requests name the catalog's
    ``input_tensor``, which ``check_signature`` found served. Transient Triton failures are
    retried inside the resource; what reaches the caller is either ``TritonTransientError``
    (the retry budget ran out) or permanent (``is_permanent``).
    """
    matrix = spec.build_matrix(table)
    config = triton.get_model_config(spec.triton_model)  # one read: signature, labels, versions
    check_signature(spec, config, matrix.shape[1])
    current = deployment or Deployment.from_config(spec.triton_model, config)
    ids = [str(v) for v in table.column(spec.id_column).to_pylist()]
    n = len(ids)
    to_canary = (
        canary_mask(spec.triton_model, ids, current.canary_share)
        if current.canary
        else np.zeros(n, dtype=bool)
    )
    canary_rows = np.flatnonzero(to_canary)
    if not len(canary_rows):
        champion = _infer(spec, triton, matrix, current.champion)
        results = [champion]
        outputs = champion.outputs
        champion_version = champion.model_version
    else:
        champion_rows = np.flatnonzero(~to_canary)
        champion = _infer(spec, triton, matrix[champion_rows], current.champion)
        canary = _infer(spec, triton, matrix[canary_rows], current.challenger)
        results = [champion, canary]
        outputs = _merge(n, [(champion_rows, champion), (canary_rows, canary)])
        champion_version = champion.model_version or current.champion
    resolved = replace(current, champion=champion_version)
    versions = np.where(to_canary, resolved.challenger, champion_version)
    routes = np.where(to_canary, ROUTE_CANARY, ROUTE_CHAMPION)
    decisions = decisions_table(
        spec,
        ids,
        matrix,
        outputs,
        labels_from_config(config),
        run_id,
        model_name=spec.triton_model,
        versions=versions,
        routes=routes,
    )
    return decisions, Scored(
        deployment=resolved,
        model_name=spec.triton_model,
        outputs=outputs,
        requests=sum(r.requests for r in results),
        retries=sum(r.retries for r in results),
        failovers=sum(r.failovers for r in results),
        latencies_ms=[ms for r in results for ms in r.latencies_ms],
        canary_rows=len(canary_rows),
    )


def score_version(
    spec: ModelSpec,
    table: pa.Table | pa.RecordBatch,
    triton: TritonResource,
    run_id: str,
    version: str,
    *,
    route: str = ROUTE_SHADOW,
) -> tuple[pa.Table, InferenceResult]:
    """Score every row with one named version (shadow scoring): rows say ``route``."""
    matrix = spec.build_matrix(table)
    config = triton.get_model_config(spec.triton_model)
    check_signature(spec, config, matrix.shape[1])
    result = _infer(spec, triton, matrix, version)
    ids = [str(v) for v in table.column(spec.id_column).to_pylist()]
    decisions = decisions_table(
        spec,
        ids,
        matrix,
        result.outputs,
        labels_from_config(config),
        run_id,
        model_name=spec.triton_model,
        versions=[result.model_version] * len(ids),
        routes=[route] * len(ids),
    )
    return decisions, result
