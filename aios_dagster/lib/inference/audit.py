"""Answer "why was ticket X routed to Y" from the append-only decision log.

The log keeps every decision that took effect, including those a later run replaced (a
re-execution after a failure, a re-scored day): the answer shows the decision in effect and
says which earlier ones were superseded and by which run. Head names come from the model's
catalog entry (its first head routes), never from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from aios_dagster.lib.inference.catalog import ModelSpec
from aios_dagster.lib.inference.decision_log import resolve


def decisions_for(log_dir: Path, record_id: str) -> list[dict[str, Any]]:
    """Every logged decision about one record, oldest first, each marked in effect or not.

    See ``decision_log.resolve`` for the fields added (``in_effect``, ``superseded_by_run``).
    """
    if not log_dir.exists():
        raise FileNotFoundError(f"no decision log at {log_dir}: nothing has been scored yet")
    # Parts written before a column existed (``route``) lack it: one schema for all parts,
    # or the dataset would take the first file's and drop the newer columns silently.
    files = sorted(
        str(p) for p in log_dir.rglob("*.parquet") if not p.name.startswith((".", "_"))
    )  # hidden names are parts being written, as pyarrow's own discovery skips them
    schema = pa.unify_schemas([pq.read_schema(f) for f in files]) if files else None
    dataset = ds.dataset(files, format="parquet", schema=schema)
    table = dataset.to_table(filter=pc.field("record_id") == record_id)
    return resolve(table.to_pylist())


def _catalog() -> Mapping[str, ModelSpec]:
    """The declared models; imported on use so reading the log needs no definitions."""
    from aios_dagster.lib.lifecycle.assets import catalog

    return catalog()


def spec_for_model(model_name: str, specs: Mapping[str, ModelSpec] | None = None) -> ModelSpec:
    """The catalog entry (of ``specs``, default the model catalog) whose served model decided."""
    found = [
        s
        for s in (specs if specs is not None else _catalog()).values()
        if s.triton_model == model_name
    ]
    if not found:
        raise LookupError(f"model {model_name!r} is not in the model catalog")
    return found[0]


def explain(decision: dict[str, Any], spec: ModelSpec | None = None) -> str:
    """One paragraph a support lead can read.

    ``spec`` is the decision's catalog entry (looked up by the served model name if omitted).
    """
    spec = spec or spec_for_model(decision["model_name"])
    routing, *others = (h.name for h in spec.heads)
    route = decision["decision"]
    confidence = decision[f"{routing}_confidence"]
    why = (
        f"{routing} confidence {confidence:.2f} was below the policy threshold "
        f"{decision['min_confidence']:.2f}, so it went to {route}"
        if decision["needs_review"]
        else f"the model chose {route} with {routing} confidence {confidence:.2f} "
        f"(threshold {decision['min_confidence']:.2f})"
    )
    also = "".join(
        f", {head} {decision[head]} ({decision[f'{head}_confidence']:.2f})" for head in others
    )
    status = (
        f" Superseded by run {decision['superseded_by_run']} at "
        f"{decision['superseded_at']:%Y-%m-%d %H:%M:%S %Z}."
        if decision.get("superseded_by_run")
        else " In effect."
        if decision.get("in_effect")
        else ""
    )
    canary = " (canary: the challenger decided)" if decision.get("route") == "canary" else ""
    return (
        f"{decision['record_id']} -> {route}{also}: {why}. "
        f"Model {decision['model_name']} v{decision['model_version']}{canary}, policy "
        f"{decision['policy']}, input sha256 {decision['input_hash']}, run {decision['run_id']}, "
        f"scored {decision['scored_at']:%Y-%m-%d %H:%M:%S %Z}.{status}"
    )


def explain_record(
    log_dir: Path,
    record_id: str,
    *,
    show_all: bool = False,
    specs: Mapping[str, ModelSpec] | None = None,
) -> list[str]:
    """The decision in effect for ``record_id`` (with ``show_all``, its history, oldest first).

    ``specs`` are the catalog entries (default: the model catalog). Raises ``LookupError`` when
    nothing was logged for the record.
    """
    decisions = decisions_for(log_dir, record_id)
    if not decisions:
        raise LookupError(f"no decision logged for {record_id} in {log_dir}")
    shown = decisions if show_all else [d for d in decisions if d["in_effect"]]
    specs = specs if specs is not None else _catalog()
    return [explain(d, spec_for_model(d["model_name"], specs)) for d in shown]
