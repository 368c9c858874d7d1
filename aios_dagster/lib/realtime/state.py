"""The handler's memory: who wrote how often, and which ticket a thread belongs to.

A customer writing for the third time within a day is waiting on something: their email is
raised one priority level. A reply joins the ticket of the thread it answers instead of opening
a new one. Both need state across emails, kept in the online store (so it survives a restart
and is shared by the handler's replicas), and both are idempotent: an email is remembered by
its id, so a replayed pass finds itself already counted and gets the same answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import dagster as dg
import pyarrow as pa
from pydantic import ConfigDict, Field, model_validator

from aios_dagster.lib.realtime.online_store import KeyValueStore


class RepeatSenderConfig(dg.Model, dg.Resolvable):
    """Raise ``head`` one level (along ``levels``, lowest first) for a sender's ``emails``-th
    email within ``within_hours``."""

    model_config = ConfigDict(extra="forbid")

    head: str = "priority"
    levels: list[str] = Field(min_length=2)  # e.g. [P3, P2, P1]: P1 is the highest
    emails: int = Field(default=3, ge=2)
    within_hours: float = Field(default=24.0, gt=0)

    @model_validator(mode="after")
    def _distinct(self) -> RepeatSenderConfig:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError(f"repeat_sender.levels must be distinct: {self.levels}")
        return self


@dataclass(frozen=True)
class Outcome:
    """What the state said about one email."""

    email_id: str
    ticket_id: str
    thread_id: str | None
    sender_emails: int  # this sender's emails in the window, this one included
    escalated_from: str | None  # the level before raising, None when not raised


def _namespace(handler: str, what: str) -> str:
    return f"state:{handler}:{what}"


def remember(
    store: KeyValueStore,
    handler: str,
    landed: pa.Table,
    config: RepeatSenderConfig | None,
    labels: dict[str, str],
) -> dict[str, Outcome]:
    """Record ``landed``'s emails (rows of raw_emails) and say, per email, its ticket and
    whether to raise it. ``labels`` is each email's current ``config.head`` label."""
    rows = landed.select(["email_id", "thread_id", "sender_token", "received_at"]).to_pylist()
    senders_ns, threads_ns = _namespace(handler, "senders"), _namespace(handler, "threads")
    senders = store.get_many(senders_ns, [r["sender_token"] for r in rows if r["sender_token"]])
    threads = store.get_many(threads_ns, [r["thread_id"] for r in rows if r["thread_id"]])
    window = timedelta(hours=config.within_hours if config else 24.0)
    outcomes: dict[str, Outcome] = {}
    for row in sorted(rows, key=lambda r: (r["received_at"], r["email_id"])):
        email_id, thread, sender = row["email_id"], row["thread_id"], row["sender_token"]
        when: datetime = row["received_at"]
        ticket = threads.setdefault(thread, email_id) if thread else email_id
        seen: dict[str, str] = senders.setdefault(sender, {}) if sender else {}
        seen[email_id] = when.isoformat()
        # keep a day's worth more than the window: enough for any email arriving late
        horizon = when - 2 * window
        for old in [k for k, v in seen.items() if datetime.fromisoformat(v) < horizon]:
            del seen[old]
        count = sum(1 for v in seen.values() if when - window < datetime.fromisoformat(v) <= when)
        raised = None
        label = labels.get(email_id)
        if config and count >= config.emails and label in config.levels:
            at = config.levels.index(label)
            if at + 1 < len(config.levels):
                raised = label
        outcomes[email_id] = Outcome(email_id, ticket, thread, count, raised)
    store.put_many(senders_ns, {k: v for k, v in senders.items() if k})
    store.put_many(threads_ns, {k: v for k, v in threads.items() if k})
    return outcomes


def raised_label(config: RepeatSenderConfig, label: str) -> str:
    return config.levels[config.levels.index(label) + 1]
