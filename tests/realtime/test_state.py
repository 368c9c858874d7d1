"""The handler's memory: repeat senders raised once per window, replies join their ticket,
replays count nothing twice, and a restarted handler remembers (a real SQLite store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from aios_dagster.lib.realtime.online_store import open_store
from aios_dagster.lib.realtime.state import RepeatSenderConfig, raised_label, remember

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONFIG = RepeatSenderConfig(head="priority", levels=["P3", "P2", "P1"], emails=3, within_hours=24)


def _emails(*rows: tuple[str, str | None, str, float]) -> pa.Table:
    """(email_id, thread_id, sender_token, hours after T0)."""
    return pa.table(
        {
            "email_id": [r[0] for r in rows],
            "thread_id": [r[1] for r in rows],
            "sender_token": [r[2] for r in rows],
            "received_at": pa.array(
                [T0 + timedelta(hours=r[3]) for r in rows], pa.timestamp("us", tz="UTC")
            ),
        }
    )


def test_the_third_email_in_a_day_is_raised_and_replies_join_their_ticket(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    store = open_store(url)
    first = remember(store, "h", _emails(("e1", "e1", "alice", 0), ("e2", "e2", "alice", 3)),
                     CONFIG, {"e1": "P3", "e2": "P3"})  # fmt: skip
    assert [o.escalated_from for o in first.values()] == [None, None]
    store.close()

    store = open_store(url)  # a restarted handler
    third = remember(store, "h", _emails(("e3", "e1", "alice", 5)), CONFIG, {"e3": "P2"})
    assert third["e3"].sender_emails == 3 and third["e3"].escalated_from == "P2"
    assert raised_label(CONFIG, "P2") == "P1"
    assert third["e3"].ticket_id == "e1"  # a reply joins the thread's ticket

    replay = remember(store, "h", _emails(("e3", "e1", "alice", 5)), CONFIG, {"e3": "P2"})
    assert replay["e3"] == third["e3"]  # counted once, same answer

    later = remember(store, "h", _emails(("e4", None, "alice", 40)), CONFIG, {"e4": "P3"})
    assert later["e4"].sender_emails == 1 and later["e4"].escalated_from is None
    top = remember(store, "h", _emails(("e5", None, "bob", 0), ("e6", None, "bob", 1),
                                       ("e7", None, "bob", 2)), CONFIG, {"e7": "P1"})  # fmt: skip
    assert top["e7"].sender_emails == 3 and top["e7"].escalated_from is None  # already highest
    store.close()


def test_levels_must_be_distinct() -> None:
    with pytest.raises(ValueError, match="distinct"):
        RepeatSenderConfig(levels=["P2", "P2"])
