"""Answer "why was ticket X routed to Y" from the append-only decision log."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.dataset as ds


def decisions_for(log_dir: Path, record_id: str) -> list[dict]:
    """Every logged decision about one record, oldest first."""
    if not log_dir.exists():
        raise FileNotFoundError(f"no decision log at {log_dir}: nothing has been scored yet")
    dataset = ds.dataset(log_dir, format="parquet")
    table = dataset.to_table(filter=pc.field("record_id") == record_id)
    return sorted(table.to_pylist(), key=lambda r: r["scored_at"])


def explain(decision: dict) -> str:
    """One paragraph a support lead can read."""
    route = decision["decision"]
    why = (
        f"routing confidence {decision['queue_confidence']:.2f} was below the policy threshold "
        f"{decision['min_confidence']:.2f}, so it went to {route}"
        if decision["needs_review"]
        else f"the model chose {route} with confidence {decision['queue_confidence']:.2f} "
        f"(threshold {decision['min_confidence']:.2f})"
    )
    return (
        f"{decision['record_id']} -> {route} (priority {decision['priority']}): {why}. "
        f"Model {decision['model_name']} v{decision['model_version']}, policy "
        f"{decision['policy']}, input sha256 {decision['input_hash']}, run {decision['run_id']}, "
        f"scored {decision['scored_at']:%Y-%m-%d %H:%M:%S %Z}."
    )
