"""What the lifecycle assets record on a registry version, and how aliases move after the gate.

Each step writes its evidence onto the version it judged, as artifacts of the version's MLflow
run (``evaluation.json``, ``gate.json``, ``model_card.md``/``.json``) and tags (``gate``), so a
reviewer in the MLflow UI, the approver on the CLI and the promote step all read the same
record, and nothing depends on which Dagster run happened to compute it.
"""

from __future__ import annotations

import json
from bisect import bisect_left, bisect_right
from typing import Any

import pyarrow as pa

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.lake import LakeResource
from aios_dagster.lib.lifecycle.cards import model_card, store_model_card
from aios_dagster.lib.lifecycle.evaluation import Evaluation
from aios_dagster.lib.lifecycle.gate import GateResult
from aios_dagster.lib.lifecycle.lineage import collect_lineage
from aios_dagster.lib.lifecycle.registry import ModelRegistry, RegisteredVersion
from aios_dagster.lib.lifecycle.rollout import CHALLENGER, CHAMPION, GATE_TAG
from aios_dagster.lib.lifecycle.train import TrainingReport
from aios_dagster.lib.serving.linear_model import LinearHeadsModel
from aios_dagster.lib.serving.onnx_export import to_onnx
from aios_dagster.settings import current_settings

EVALUATION = "evaluation.json"
GATE = "gate.json"
HOLDOUT_FROM = "holdout_from"
HOLDOUT_TO = "holdout_to"


def _key(table: pa.Table, spec: ModelSpec, row: int) -> str:
    """A row's place in (time, id) order, as text that sorts the same way."""
    when = table.column(spec.time_column)[row].as_py()
    return f"{when.isoformat()}|{table.column(spec.id_column)[row].as_py()}"


def _keys(table: pa.Table, spec: ModelSpec) -> list[str]:
    times = table.column(spec.time_column).to_pylist()
    ids = table.column(spec.id_column).to_pylist()
    return [f"{t.isoformat()}|{i}" for t, i in zip(times, ids, strict=True)]


def register_candidate(
    spec: ModelSpec,
    registry: ModelRegistry,
    model: LinearHeadsModel,
    *,
    table: pa.Table,
    cut: int,
    report: TrainingReport,
    run_id: str,
) -> RegisteredVersion:
    """Register a trained model with its lineage, its ONNX form and its holdout boundaries.

    The holdout is recorded as the (time, id) keys of its first and last rows, so evaluation
    later selects exactly the rows after the training data, even once more labels arrived.
    """
    times = table.column(spec.time_column)
    settings = current_settings()
    lineage = collect_lineage(
        spec,
        settings=settings,
        train_window=(times[0].as_py(), times[cut - 1].as_py()),
        holdout_window=(times[cut].as_py(), times[-1].as_py()),
        rows_train=report.rows_train,
        rows_holdout=report.rows_holdout,
        content_hash=model.content_hash(),
        run_id=run_id,
    )
    return registry.register(
        spec.name,
        model,
        params={
            "holdout_fraction": spec.gate.holdout_fraction,
            "features": len(model.feature_names),
            HOLDOUT_FROM: _key(table, spec, cut),
            HOLDOUT_TO: _key(table, spec, table.num_rows - 1),
        },
        metrics={
            **{f"train_holdout_accuracy_{h}": v for h, v in report.holdout_accuracy.items()},
            **{f"train_holdout_macro_f1_{h}": v for h, v in report.holdout_macro_f1.items()},
        },
        lineage=lineage,
        artifacts={"model.onnx": to_onnx(model, spec.input_tensor)},
    )


def holdout_rows(
    spec: ModelSpec, registry: ModelRegistry, version: int, table: pa.Table
) -> pa.Table:
    """The rows of ``table`` (time, id ordered) inside the version's recorded holdout."""
    params = registry.version_params(spec.name, version)
    if HOLDOUT_FROM not in params or HOLDOUT_TO not in params:
        raise ValueError(f"{spec.name} v{version} records no holdout window; retrain it")
    keys = _keys(table, spec)
    start = bisect_left(keys, params[HOLDOUT_FROM])
    stop = bisect_right(keys, params[HOLDOUT_TO])
    if stop <= start:
        raise ValueError(
            f"{spec.name} v{version}: no labelled rows left in its holdout "
            f"{params[HOLDOUT_FROM]} .. {params[HOLDOUT_TO]}"
        )
    return table.slice(start, stop - start)


def save_evaluation(
    registry: ModelRegistry,
    spec: ModelSpec,
    version: int,
    candidate: Evaluation,
    champion: Evaluation | None,
    champion_version: int | None,
) -> None:
    doc = {
        "candidate": candidate.to_dict(),
        "champion": champion.to_dict() if champion else None,
        "champion_version": champion_version,
    }
    registry.log_version_artifacts(spec.name, version, {EVALUATION: json.dumps(doc, indent=2)})


def load_evaluation(
    registry: ModelRegistry, spec: ModelSpec, version: int
) -> tuple[Evaluation, Evaluation | None, int | None]:
    doc = json.loads(registry.read_version_artifact(spec.name, version, EVALUATION))
    champion = Evaluation.from_dict(doc["champion"]) if doc.get("champion") else None
    return Evaluation.from_dict(doc["candidate"]), champion, doc.get("champion_version")


def save_gate(registry: ModelRegistry, spec: ModelSpec, version: int, result: GateResult) -> None:
    registry.log_version_artifacts(
        spec.name, version, {GATE: json.dumps(result.to_dict(), indent=2)}
    )
    registry.set_version_tags(
        spec.name, version, {GATE_TAG: "passed" if result.passed else "failed"}
    )


def _optional_json(registry: ModelRegistry, spec: ModelSpec, version: int, path: str) -> Any:
    try:
        return json.loads(registry.read_version_artifact(spec.name, version, path))
    except FileNotFoundError:
        return None


def write_card(
    registry: ModelRegistry,
    spec: ModelSpec,
    version: int,
    *,
    lake: LakeResource | None = None,
) -> str:
    """Build the version's model card from what is recorded on it; store it; return Markdown.

    With ``lake``, the card includes the version's shadow record (days compared, agreement
    with the champion, latency), which is what an approver weighs besides the gate.
    """
    shadow = shadow_record(lake, spec, version) if lake is not None else None
    card = model_card(
        spec,
        version,
        lineage=registry.lineage(spec.name, version),
        evaluation=_optional_json(registry, spec, version, EVALUATION),
        gate=_optional_json(registry, spec, version, GATE),
        approvals=registry.approvals(spec.name, version),
        shadow=shadow,
    )
    store_model_card(registry, card)
    return card.markdown


def shadow_record(lake: LakeResource, spec: ModelSpec, version: int) -> dict[str, Any] | None:
    """The version's shadow comparison over every day compared, or None if never shadowed."""
    from aios_dagster.lib.inference.shadow_comparison import read_shadow_summary

    summary = read_shadow_summary(lake, spec.name, str(version))
    return summary if summary["rows_compared"] else None


def assign_aliases(
    spec: ModelSpec, registry: ModelRegistry, version: int, *, actor: str
) -> list[str]:
    """Move aliases for a version that passed the gate; never replaces a champion.

    No champion yet: the version becomes champion, unless the model's risk class needs a
    person's approval that it does not have (then it waits as challenger, in shadow). A
    champion exists: the version becomes the challenger. A rejected version gets no alias.
    """
    champion = registry.get_alias(spec.name, CHAMPION)
    if champion == version:
        return [f"{spec.name} v{version} is already the champion"]
    approval = registry.approval(spec.name, version)
    if approval is not None and approval.decision == "rejected":
        return [f"{spec.name} v{version} was rejected by {approval.actor}; not deployed"]
    approved = approval is not None and approval.decision == "approved"
    if champion is None and (approved or not spec.governance.approval_required):
        registry.set_alias(
            spec.name, CHAMPION, version, actor=actor, reason="first version to pass the gate"
        )
        return [f"{spec.name} v{version} is the first champion"]
    if registry.get_alias(spec.name, CHALLENGER) == version:
        return [f"{spec.name} v{version} is already the challenger"]
    why = (
        f"passed the gate; shadowing champion v{champion}"
        if champion is not None
        else "passed the gate; awaiting a person's approval (risk class "
        f"{spec.governance.risk_class})"
    )
    registry.set_alias(spec.name, CHALLENGER, version, actor=actor, reason=why)
    return [f"{spec.name} v{version} is the challenger: {why}"]
