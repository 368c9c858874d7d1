"""What an event source hands the handler runtime, and what the runtime asks of it.

A source delivers raw messages (an RFC 5322 email's bytes) with their position; it forgets a
message only when the runtime ``commit``s it, which the runtime does after the message's
decision is durable. A crash before that re-delivers it, and the runtime's writes are named
after the messages they hold, so the replay rewrites the same parts: one current decision per
email across crashes and restarts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Event:
    """One message as delivered."""

    source: str  # "kafka support-mail[0]", "folder /data/inbox"
    position: str  # where it is in its source: "offset 42", a file's relative path
    value: bytes
    name: str  # the message's file name, the email's fallback id ("support-mail-0-42.eml")
    published_at: datetime | None  # the broker's timestamp, the file's mtime
    coords: tuple[int, ...] = ()  # the source's own coordinates (Kafka: partition, offset)

    @property
    def ref(self) -> str:
        return f"{self.source} {self.position}"


class EventSource(Protocol):
    def describe(self) -> str:
        """The source as a person reads it (in logs, metadata and errors)."""
        ...

    def poll(self, max_events: int, timeout_s: float) -> list[Event]:
        """Up to ``max_events`` messages not yet handed out, waiting at most ``timeout_s``."""
        ...

    def commit(self, events: Sequence[Event]) -> None:
        """``events`` (the oldest uncommitted, in order) are durable: never deliver them again."""
        ...

    def rewind(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` again (their processing failed and will be retried)."""
        ...

    def pause(self) -> None:
        """Stop fetching (backpressure); what was fetched stays in hand."""
        ...

    def resume(self) -> None: ...

    def lag(self) -> int | None:
        """Messages waiting behind the committed position, when the source can tell."""
        ...

    def close(self) -> None: ...
