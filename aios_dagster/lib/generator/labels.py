"""Routing labels: the queue and priority a human agent gave each email of the history window.

The agent's decision is a simple, learnable function of what a router can see, plus noise:
- queue is the email's topic, except for ~5% mistakes;
- priority scores the queue's baseline urgency, urgency words in the text, the customer's
  segment (business bumps a level, premier half a level) and whether the customer had a disputed
  transaction flagged in the last 30 days; ~5% of priorities are then mistaken.
Labels are computed from the text as written (typos included), so a typo that hides "urgent"
also hides it from the agent.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from aios_dagster.lib.generator import vocab
from aios_dagster.lib.generator.emails import EmailRecord
from aios_dagster.lib.generator.transactions import Ledger

LABEL_COLUMNS: tuple[str, ...] = ("email_id", "queue", "priority", "labelled_at")
NOISE_P = 0.05
_QUEUE_BASE: dict[str, float] = {
    "card_fraud": 2.0,
    "disputes": 1.0,
    "login_access": 1.0,
    "loans": 0.0,
    "complaints": 1.0,
    "account_servicing": 0.0,
}
_SEGMENT_BUMP: dict[str, float] = {"business": 1.0, "premier": 0.5}
# Minutes from arrival to the agent's decision, by priority: urgent mail is triaged first.
_DELAY_MINUTES: dict[str, tuple[float, float]] = {
    "P1": (3.0, 90.0),
    "P2": (20.0, 600.0),
    "P3": (60.0, 2880.0),
}


@dataclass(frozen=True, slots=True)
class LabelRow:
    email_id: str
    queue: str
    priority: str
    labelled_at: str


def is_urgent(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in vocab.URGENCY_WORDS)


def true_priority(topic: str, text: str, segment: str | None, recent_dispute: bool) -> str:
    """The priority a careful agent would give, before mistakes."""
    score = _QUEUE_BASE[topic] + _SEGMENT_BUMP.get(segment or "", 0.0)
    score += 1.0 if is_urgent(text) else 0.0
    score += 1.0 if recent_dispute else 0.0
    if score >= 2.0:
        return "P1"
    return "P2" if score >= 1.0 else "P3"


def make_labels(
    rng: random.Random, records: Sequence[EmailRecord], ledger: Ledger
) -> list[LabelRow]:
    """One label per record, in record order."""
    rows: list[LabelRow] = []
    for record in records:
        customer = record.sender.customer
        recent_dispute = customer is not None and ledger.has_recent_dispute(
            customer.customer_id, int(record.sent_at.timestamp())
        )
        queue = record.topic
        if rng.random() < NOISE_P:
            queue = rng.choice([q for q in vocab.QUEUES if q != record.topic])
        priority = true_priority(
            record.topic, record.text, customer.segment if customer else None, recent_dispute
        )
        if rng.random() < NOISE_P:
            priority = rng.choice([p for p in vocab.PRIORITIES if p != priority])
        low, high = _DELAY_MINUTES[priority]
        labelled_at = record.sent_at + timedelta(minutes=round(rng.uniform(low, high)))
        rows.append(LabelRow(record.email_id, queue, priority, labelled_at.isoformat()))
    return rows


def write_labels_csv(path: Path, rows: Sequence[LabelRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        writer.writerows((r.email_id, r.queue, r.priority, r.labelled_at) for r in rows)


PENDING_LABELS = Path("labels") / "pending" / "agent_decisions.csv"
"""The current window's routing decisions the agents will make, not exported yet: they arrive
later through :func:`deliver_labels`, as labels do in a ticketing system."""


def _read(path: Path) -> list[LabelRow]:
    with path.open(newline="", encoding="utf-8") as handle:
        return [LabelRow(**row) for row in csv.DictReader(handle)]


def deliver_labels(out_dir: Path, *, until: datetime) -> Path | None:
    """Export the labels agents gave by ``until``: a new ``routing_labels_<time>.csv`` beside
    the history (the labels connector picks it up incrementally); later ones stay pending.

    Returns the new export, or None when no pending decision was made by then.
    """
    pending_path = Path(out_dir) / PENDING_LABELS
    if not pending_path.exists():
        return None
    pending = _read(pending_path)
    due = [r for r in pending if datetime.fromisoformat(r.labelled_at) <= until]
    if not due:
        return None
    export = Path(out_dir) / "labels" / f"routing_labels_{until:%Y%m%dT%H%M%S}.csv"
    write_labels_csv(export, due)
    write_labels_csv(pending_path, [r for r in pending if r not in due])
    return export
